"""The Operator-Service API's edges over the FakeRuntime: who may call, what is signed,
what is refused. The document's workflow on real containers is in tests/docker."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from localcompute.web.auth import sign
from tests.conftest import BUSYBOX_IMAGE
from tests.gates import Gates
from tests.operator_client import (
    BOTH,
    DOCUMENT_EXAMPLE,
    OPERATOR_CONFIG,
    PROVIDER,
    STRANGER,
    Provider,
    localised,
)
from tests.served import CONSUMER, Served, fake_server

# One server and one event loop for the module, as one served process has.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    async with fake_server(tmp_path_factory.mktemp("operator"), extra=OPERATOR_CONFIG) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module")
async def provider(served: Served) -> AsyncIterator[Provider]:
    async with aiohttp.ClientSession() as session:
        yield Provider(session, served.base_url)


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


async def test_a_provider_follows_a_running_jobs_output(
    provider: Provider, served: Served, gates: Gates
) -> None:
    gate = gates()
    talker = {
        "rawcode": f"echo begun; {gate.wait}; echo ended",
        "url": "",
        "container": {"image": BUSYBOX_IMAGE.split(":")[0], "entrypoint": "sh $ALGO"},
    }
    body = localised(DOCUMENT_EXAMPLE, served, agreementId="logs", owner=CONSUMER, algorithm=talker)
    body["workflow"]["stages"][0]["algorithm"]["container"] = talker["container"]
    code, [job] = await provider.create(body)
    assert code == 200
    job_id = job["jobId"]
    while (await provider.status(job_id))["status"] < 40:
        await asyncio.sleep(0.05)
    for prefix in BOTH:
        code, answer = await provider.call(
            "GET", f"{prefix}/logs", params={"jobId": job_id, "owner": CONSUMER}
        )
        assert code == 401 and "signature" in answer["error"], "unsigned"
    async with provider.session.get(
        provider.base + "/api/v1/operator/logs", params=provider.signed(CONSUMER, job_id)
    ) as r:
        assert r.status == 200 and r.content_type == "text/plain"
        # "ended" is not written before the gate opens (a log sent only at its end never
        # comes).
        assert await asyncio.wait_for(r.content.readline(), 10) == b"begun\n"
        await gate.open()
        assert await r.content.read() == b"ended\n"
    await provider.wait_final(job_id)
