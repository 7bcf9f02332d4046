"""The Operator-Service API v1 over HTTP: the document's workflow, both path forms,
provider signatures, and one engine shared with the provider API."""

from __future__ import annotations

import asyncio
import copy
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from localcompute.auth import ProviderKey, sign
from tests.conftest import BUSYBOX_IMAGE
from tests.docker.served import CONSUMER, LOCAL_DID, Consumer, Served, running_server

pytestmark = pytest.mark.docker

NODE_IMAGE = "localcompute-test/node"
PROVIDER = bytes.fromhex("22" * 32)  # allowed by the server's [operator] section
STRANGER = bytes.fromhex("55" * 32)  # a valid key, but not an allowed provider
BOTH = ("/api/v1/operator", "/api/v1")

# The POST example of the "Compute Service Endpoints" document, as written there
# (its broken output.owner aside); the test points its URLs and image at local ones.
DID_0 = "did:op:87bdaabb33354d2eb014af5091c604fb4b0f67dc6cca4d18a96547bffdc27bcf"
DID_1 = "did:op:1384941e6f0b46299b6e515723df3d8e8e5d1fb175554467a1cb7bc613f5c72e"
DOCUMENT_EXAMPLE: dict[str, Any] = {
    "agreementId": "111",
    "owner": "0x22",
    "signature": "9999",
    "workflow": {
        "stages": [
            {
                "index": 0,
                "input": [
                    {
                        "id": DID_0,
                        "url": ["https://data.ok.gov/sites/default/files/unspsc%20codes_3.csv"],
                        "index": 0,
                    },
                    {
                        "id": DID_1,
                        "url": [
                            "https://data.ct.gov/api/views/2fi9-sgi3/rows.csv?accessType=DOWNLOAD"
                        ],
                        "index": 1,
                    },
                ],
                "compute": {"Instances": 1, "namespace": "withgpu", "maxtime": 3600},
                "algorithm": {
                    "id": "did:op:87bdaabb33354d2eb014af5091c604fb4b0f67dc6cca4d18a96547bffdc27bcf",
                    "url": "https://raw.githubusercontent.com/oceanprotocol/test-algorithm/master/javascript/algo.js",
                    "rawcode": "console.log('this is a test')",
                    "container": {"image": "node", "tag": "10", "entrypoint": "node $ALGO"},
                },
                "output": {
                    "nodeUri": "https://nile.dev-ocean.com",
                    "brizoUri": "https://brizo.marketplace.dev-ocean.com",
                    "brizoAddress": "0x4aaab179035dc57b35e2ce066919048686f82972",
                    "metadata": {"name": "Workflow output"},
                    "metadataUri": "https://aquarius.marketplace.dev-ocean.com",
                    "secretStoreUri": "https://secret-store.nile.dev-ocean.com",
                    "whitelist": [
                        "0x00Bd138aBD70e2F00903268F3Db08f2D25677C9e",
                        "0xACBd138aBD70e2F00903268F3Db08f2D25677C9e",
                    ],
                    "publishOutput": True,
                    "publishAlgorithmLog": True,
                },
            }
        ]
    },
}

NODE_SHIM = r"""#!/bin/sh
# A stand-in for node in the tests: prints what console.log('...') lines would.
sed -n "s/^[[:space:]]*console\.log('\(.*\)');*[[:space:]]*$/\1/p" "$1"
"""


@pytest.fixture(scope="session")
def node_image(busybox_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """localcompute-test/node:10, a busybox with a node shim; made once, kept."""
    ref = f"{NODE_IMAGE}:10"
    if subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode:
        context = tmp_path_factory.mktemp("node-image")
        (context / "node").write_text(NODE_SHIM)
        (context / "node").chmod(0o755)
        (context / "Dockerfile").write_text(f"FROM {busybox_image}\nCOPY node /bin/node\n")
        subprocess.run(
            ["docker", "build", "--network", "none", "-q", "-t", ref, str(context)],
            check=True,
            capture_output=True,
        )
    return ref


OPERATOR_CONFIG = f"""
[[environments]]
id = "withgpu"
max_jobs = 2
max_job_duration = 60

[[environments]]
id = "short"
max_jobs = 2
max_job_duration = 3

[operator]
allowed_providers = ["{ProviderKey(PROVIDER).address.lower()}"]
"""


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, busybox_image: str, node_image: str
) -> Iterator[Served]:
    with running_server(tmp_path_factory.mktemp("operator"), extra=OPERATOR_CONFIG) as server:
        yield server


class Provider:
    """Calls the operator as a provider does: signed owner + jobId + nonce, nonce = time_ns."""

    def __init__(self, session: aiohttp.ClientSession, base: str, key: bytes = PROVIDER):
        self.session, self.base, self.key = session, base, key

    def signed(self, owner: str = "", job_id: str = "", **params: Any) -> dict[str, Any]:
        nonce = time.time_ns()
        return {
            **params,
            **({"owner": owner} if owner else {}),
            **({"jobId": job_id} if job_id else {}),
            "nonce": str(nonce),
            "providerSignature": sign(f"{owner}{job_id}{nonce}", self.key),
        }

    async def call(
        self, method: str, path: str, *, json: Any = None, params: Any = None
    ) -> tuple[int, Any]:
        async with self.session.request(method, self.base + path, json=json, params=params) as r:
            body = await r.json() if r.content_type == "application/json" else await r.read()
            return r.status, body

    async def create(
        self, body: dict[str, Any], prefix: str = "/api/v1/operator"
    ) -> tuple[int, Any]:
        nonce = time.time_ns()
        body = {
            **body,
            "nonce": nonce,
            "providerSignature": sign(f"{body['owner']}{nonce}", self.key),
        }
        body.pop("signature", None)
        return await self.call("POST", prefix + "/compute", json=body)

    async def status(self, job_id: str, prefix: str = "/api/v1/operator") -> dict[str, Any]:
        code, body = await self.call("GET", prefix + "/compute", params=self.signed(job_id=job_id))
        assert code == 200, body
        [job] = body
        return dict(job)

    async def wait_final(self, job_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = await self.status(job_id)
            if job["status"] in (31, 32, 70):
                return job
            await asyncio.sleep(0.2)
        raise AssertionError(f"job {job_id} did not finish")


@pytest.fixture
async def provider(served: Served) -> AsyncIterator[Provider]:
    async with aiohttp.ClientSession() as session:
        yield Provider(session, served.base_url)


def localised(example: dict[str, Any], served: Served, **changes: Any) -> dict[str, Any]:
    """The document's example with its URLs on the test's server and its image local."""
    body = copy.deepcopy(example)
    stage = body["workflow"]["stages"][0]
    files = served.extra["files"]
    for item in stage["input"]:
        item["url"] = [f"http://127.0.0.1:{files.server_port}/{item['index']}.csv"]
    stage["algorithm"]["url"] = f"http://127.0.0.1:{files.server_port}/algo.js"
    stage["algorithm"]["container"]["image"] = NODE_IMAGE
    for key, value in changes.items():
        if key in ("compute", "algorithm", "output"):
            stage[key] = {**stage[key], **value}
        else:
            body[key] = value
    return body


async def test_document_example_runs_to_70_on_both_path_forms(
    provider: Provider, served: Served
) -> None:
    code, answer = await provider.create(localised(DOCUMENT_EXAMPLE, served), prefix="/api/v1")
    assert code == 200, answer
    [created] = answer
    job_id = created["jobId"]
    assert created["owner"] == "0x22" and created["agreementId"] == "111"
    assert created["inputDID"] == [
        i["id"] for i in DOCUMENT_EXAMPLE["workflow"]["stages"][0]["input"]
    ]
    assert created["algoDID"] == DOCUMENT_EXAMPLE["workflow"]["stages"][0]["algorithm"]["id"]
    assert created["output"] == DOCUMENT_EXAMPLE["workflow"]["stages"][0]["output"]

    done = await provider.wait_final(job_id)
    assert (done["status"], done["statusText"], done["exitCode"]) == (70, "Job completed", 0)
    assert done["environment"] == "withgpu"
    assert [r["type"] for r in done["results"]] == [
        "algorithmLog",
        "configrationLog",
        "filteringLog",
        "publishLog",
    ]
    assert done["algologUrl"] and done["configlogUrl"] and done["publishlogUrl"]
    assert done["outputsUrl"] == [] and done["resultsDid"] == ""
    for prefix in BOTH:
        assert (await provider.status(job_id, prefix))["jobId"] == job_id
        code, log = await provider.call(
            "GET", f"{prefix}/getResult", params=provider.signed("0x22", job_id, index="0")
        )
        assert code == 200 and log.strip() == b"this is a test"
        code, running = await provider.call(
            "GET", f"{prefix}/runningjobs", params=provider.signed()
        )
        assert code == 200 and job_id not in [j["jobId"] for j in running]
        code, envs = await provider.call("GET", f"{prefix}/environments")
        assert code == 200 and {e["id"] for e in envs} >= {"withgpu", "short"}
    code, missing = await provider.call(
        "GET", "/api/v1/operator/getResult", params=provider.signed("0x22", job_id, index="9")
    )
    assert code == 404 and "error" in missing
    code, _ = await provider.call(
        "GET", "/api/v1/operator/getResult", params=provider.signed("0x99", job_id, index="0")
    )
    assert code == 404, "0x99 neither owns the job nor is whitelisted"


async def test_stop_and_delete_on_both_path_forms(provider: Provider, served: Served) -> None:
    sleeper = {
        "rawcode": "console.log('never printed')\nsleep 60",
        "container": {
            "image": BUSYBOX_IMAGE.split(":")[0],
            "tag": "latest",
            "entrypoint": "sh $ALGO",
        },
    }
    code, [job] = await provider.create(
        localised(DOCUMENT_EXAMPLE, served, agreementId="stop-me", algorithm=sleeper)
    )
    assert code == 200
    job_id = job["jobId"]
    code, again = await provider.create(localised(DOCUMENT_EXAMPLE, served, agreementId="stop-me"))
    assert code == 400 and "already in use" in again["error"]
    code, stopped = await provider.call(
        "PUT", "/api/v1/compute", params=provider.signed(job_id=job_id)
    )
    assert code == 200 and stopped[0]["stopreq"] == 1
    done = await provider.wait_final(job_id)
    assert done["terminationReason"] == "stopped"
    code, deleted = await provider.call(
        "DELETE", "/api/v1/operator/compute", params=provider.signed(job_id=job_id)
    )
    assert code == 200 and deleted[0]["removed"] == 1
    assert not (served.root / "var" / "jobs" / job_id).exists()


@pytest.mark.parametrize(("env", "maxtime", "limit"), [("withgpu", 2, 2), ("short", 3600, 3)])
async def test_maxtime_lowers_the_limit_but_never_raises_it(
    provider: Provider, served: Served, env: str, maxtime: int, limit: int
) -> None:
    sleeper = {
        "rawcode": "sleep 30 # longer than any limit here",
        "container": {
            "image": BUSYBOX_IMAGE.split(":")[0],
            "tag": "latest",
            "entrypoint": "sh $ALGO",
        },
    }
    body = localised(
        DOCUMENT_EXAMPLE,
        served,
        agreementId=f"maxtime-{env}",
        algorithm=sleeper,
        compute={"namespace": env, "maxtime": maxtime},
    )
    code, [job] = await provider.create(body)
    assert code == 200
    done = await provider.wait_final(job["jobId"])
    assert (done["stopreq"], done["terminationReason"]) == (2, "timeout")
    ran = float(done["dateFinished"]) - float(done["dateCreated"])
    assert limit <= ran < limit + 10


async def test_refusals(provider: Provider, served: Served) -> None:
    body = localised(DOCUMENT_EXAMPLE, served, agreementId="refused")
    code, answer = await provider.call("POST", "/api/v1/operator/compute", json=body)
    assert code == 401 and "signature" in answer["error"], "the document's fake signature"
    stranger = Provider(provider.session, provider.base, STRANGER)
    code, answer = await stranger.create(body)
    assert code == 401 and "not allowed" in answer["error"]

    nonce = time.time_ns()
    signed = {**body, "nonce": nonce, "providerSignature": sign(f"0x22{nonce}", PROVIDER)}
    signed.pop("signature")
    signed["workflow"] = {"stages": []}
    code, answer = await provider.call("POST", "/api/v1/operator/compute", json=signed)
    assert code == 400
    signed["workflow"] = body["workflow"]
    code, [job] = await provider.call("POST", "/api/v1/operator/compute", json=signed)
    assert code == 200
    signed["agreementId"] = "replayed"
    code, answer = await provider.call("POST", "/api/v1/operator/compute", json=signed)
    assert code == 401 and "nonce" in answer["error"], "a replayed nonce"
    await provider.wait_final(job["jobId"])

    remote = copy.deepcopy(body)
    remote["agreementId"] = "remote"
    remote["workflow"]["stages"][0]["input"][0] = {
        "index": 0,
        "id": "did:op:aa",
        "remote": {"txId": "0x1", "serviceId": "s"},
    }
    code, answer = await provider.create(remote)
    assert code == 400 and "provider" in answer["error"]
    two = copy.deepcopy(body)
    two["agreementId"] = "two-stages"
    two["workflow"]["stages"].append(two["workflow"]["stages"][0])
    code, answer = await provider.create(two)
    assert (code, answer) == (400, {"error": "Multiple stages are not supported yet"})

    code, answer = await provider.call("GET", "/api/v1/operator/compute", params=provider.signed())
    assert code == 400 and "specify one of" in answer["error"]
    code, answer = await provider.call("GET", "/api/v1/operator/runningjobs")
    assert code == 401
    code, answer = await provider.call("POST", "/api/v1/operator/compute", json={})
    assert code == 400 and answer == {"error": "payload seems empty."}
    code, answer = await provider.call(
        "POST", "/api/v1/operator/compute", json={**signed, "agreementId": 5}
    )
    assert code == 400 and "agreementId" in answer["error"]


async def test_one_engine_one_store_across_both_apis(provider: Provider, served: Served) -> None:
    # Started through the operator for a real consumer: visible to that consumer.
    body = localised(DOCUMENT_EXAMPLE, served, agreementId="cross", owner=CONSUMER)
    code, [job] = await provider.create(body)
    assert code == 200
    consumer = Consumer(provider.session, served.base_url)
    assert [j["jobId"] for j in await consumer.status(job["jobId"])] == [job["jobId"]]
    await provider.wait_final(job["jobId"])

    # Started through the provider API: listed by runningjobs while it runs.
    raw = {
        "meta": {
            "rawcode": "sleep 60 # shows in runningjobs",
            "container": {"image": BUSYBOX_IMAGE.split(":")[0], "entrypoint": "sh $ALGO"},
        }
    }
    status, [started] = await consumer.start(raw, did=LOCAL_DID)
    assert status == 200
    code, running = await provider.call(
        "GET", "/api/v1/operator/runningjobs", params=provider.signed()
    )
    assert code == 200 and started["jobId"] in [j["jobId"] for j in running]
    code, _ = await provider.call(
        "PUT", "/api/v1/operator/compute", params=provider.signed(job_id=started["jobId"])
    )
    assert code == 200
    assert (await provider.wait_final(started["jobId"]))["terminationReason"] == "stopped"


async def test_a_sent_owner_is_signed_on_every_call(provider: Provider, served: Served) -> None:
    # A job of another owner runs beside one of CONSUMER's: runningjobs?owner= lists only the
    # latter, and only when the owner is part of the signed message, as on every other call.
    sleeper = {"rawcode": "sleep 60", "url": "", "container": {"checksum": ""}}
    ids = {}
    for owner in (CONSUMER, "0x22"):
        body = localised(
            DOCUMENT_EXAMPLE, served, agreementId=f"owner-{owner}", owner=owner, algorithm=sleeper
        )
        body["workflow"]["stages"][0]["algorithm"]["container"] = {
            "image": BUSYBOX_IMAGE.split(":")[0],
            "tag": "",
            "entrypoint": "sh $ALGO",
            "checksum": "",
        }
        code, answer = await provider.create(body)
        assert code == 200, answer
        ids[owner] = answer[0]["jobId"]
    try:
        for prefix in BOTH:
            code, running = await provider.call(
                "GET", f"{prefix}/runningjobs", params=provider.signed(CONSUMER)
            )
            assert code == 200, running
            assert [j["jobId"] for j in running] == [ids[CONSUMER]]

            # Signed without the owner it sends: refused, and the answer says what was signed.
            unsigned_owner = {**provider.signed(), "owner": CONSUMER}
            code, answer = await provider.call(
                "GET", f"{prefix}/runningjobs", params=unsigned_owner
            )
            assert code == 401 and "owner + jobId + nonce" in answer["error"], answer
            assert CONSUMER in answer["error"]

            # environments stays public; signed, it is checked like every other call.
            code, envs = await provider.call(
                "GET", f"{prefix}/environments", params=provider.signed(CONSUMER)
            )
            assert code == 200 and {e["id"] for e in envs} >= {"withgpu", "short"}
            code, answer = await provider.call(
                "GET", f"{prefix}/environments", params=unsigned_owner
            )
            assert code == 401 and "owner + jobId + nonce" in answer["error"], answer
    finally:
        for job_id in ids.values():
            code, _ = await provider.call(
                "PUT", "/api/v1/operator/compute", params=provider.signed(job_id=job_id)
            )
            assert code == 200
    for job_id in ids.values():
        done = await provider.wait_final(job_id)
        assert (done["status"], done["terminationReason"]) == (70, "stopped")


async def test_workflow_with_empty_optional_fields_runs_short_raw_code(
    provider: Provider, served: Served
) -> None:
    body = localised(DOCUMENT_EXAMPLE, served, agreementId="empty-fields")
    stage = body["workflow"]["stages"][0]
    stage["algorithm"] = {
        "id": "",
        "url": "",
        "rawcode": "true",
        "remote": {},
        "container": {
            "image": BUSYBOX_IMAGE.split(":")[0],
            "tag": "",
            "entrypoint": "sh $ALGO",
            "checksum": "",
        },
    }
    code, answer = await provider.create(body)
    assert code == 200, answer
    done = await provider.wait_final(answer[0]["jobId"])
    assert (done["status"], done["terminationReason"], done["exitCode"]) == (70, "completed", 0)
