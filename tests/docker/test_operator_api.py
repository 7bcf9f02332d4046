"""The Operator-Service API v1 over HTTP: the document's workflow, both path forms,
provider signatures, and one engine shared with the provider API."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from tests.conftest import BUSYBOX_IMAGE
from tests.operator_client import (
    BOTH,
    DOCUMENT_EXAMPLE,
    NODE_IMAGE,
    OPERATOR_CONFIG,
    Provider,
    localised,
)
from tests.served import CONSUMER, LOCAL_DID, Consumer, Served, running_server

pytestmark = pytest.mark.docker

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


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, busybox_image: str, node_image: str
) -> Iterator[Served]:
    with running_server(tmp_path_factory.mktemp("operator"), extra=OPERATOR_CONFIG) as server:
        yield server


@pytest.fixture
async def provider(served: Served) -> AsyncIterator[Provider]:
    async with aiohttp.ClientSession() as session:
        yield Provider(session, served.base_url)


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
        "receipt",
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
