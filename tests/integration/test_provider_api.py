"""The provider compute API's HTTP edges, over the FakeRuntime: routes, signatures,
nonces, refusals, bad input. What containers really do is in tests/docker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.gates import Gates
from tests.served import (
    ALGO_DID,
    ENV,
    LOCAL_DID,
    OTHER_KEY,
    UNTRUSTED_DID,
    URL_DID,
    Consumer,
    Served,
    fake_server,
)

# Runs on the host under the FakeRuntime: it uses the variables, not literal paths.
RAW = {
    "meta": {
        "rawcode": "echo ok; echo seen > $OUTPUTS/seen.txt",
        "container": {"image": "localcompute/busybox", "tag": "latest", "entrypoint": "sh $ALGO"},
    }
}


# One server and one event loop for the module, as one served process has.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    async with fake_server(tmp_path_factory.mktemp("provider")) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def consumer(served: Served, session: aiohttp.ClientSession) -> Consumer:
    return Consumer(session, served.base_url)


async def test_root_announces_the_provider_and_every_route(
    served: Served, session: aiohttp.ClientSession
) -> None:
    async with session.get(served.base_url + "/") as r:
        root = await r.json()
    assert root["chainIds"] == [8996, 137]
    assert set(root["providerAddresses"]) == {"8996", "137"}
    assert (
        root["providerAddresses"]["8996"] == Consumer(session, "", bytes.fromhex("22" * 32)).address
    )
    assert root["serviceEndpoints"]["computeStart"] == ["POST", "/api/services/compute"]
    assert root["serviceEndpoints"]["computeResult"] == ["GET", "/api/services/computeResult"]
    assert {
        "nonce",
        "computeEnvironments",
        "initializeCompute",
        "computeStatus",
        "computeStop",
        "computeDelete",
    } <= set(root["serviceEndpoints"])
    assert r.headers["Access-Control-Allow-Origin"] == "*"


async def test_nonce_is_zero_for_a_stranger_and_reading_stores_nothing(
    consumer: Consumer, served: Served, session: aiohttp.ClientSession
) -> None:
    stranger = Consumer(session, served.base_url, bytes.fromhex("44" * 32))
    assert await stranger.next_nonce() == 1
    assert await stranger.next_nonce() == 1


async def test_environments_are_keyed_by_chain(
    served: Served, session: aiohttp.ClientSession
) -> None:
    async with session.get(served.base_url + "/api/services/computeEnvironments") as r:
        envs = await r.json()
    assert set(envs) == {"8996", "137"}
    [env] = envs["8996"]
    assert env["id"] == ENV and env["maxJobs"] == 2 and env["maxJobDuration"] == 60
    assert env["priceMin"] == 0 and env["free"] is True
    assert env["cpuNumber"] == env["nCPU"] == 1 and env["ramGB"] == 1
    assert env["feeToken"] == "0x" + "0" * 40 and env["cpuType"]
    assert isinstance(env["currentJobs"], int) and float(env["lastSeen"]) > 0
    async with session.get(
        served.base_url + "/api/services/computeEnvironments", params={"chainId": "137"}
    ) as r:
        assert set(await r.json()) == {"137"}


async def test_forged_signatures_and_replayed_nonces_change_nothing(
    consumer: Consumer, served: Served, session: aiohttp.ClientSession
) -> None:
    before = len(await consumer.status())
    nonce = await consumer.next_nonce()
    forger = Consumer(session, served.base_url, OTHER_KEY)
    body = {
        "dataset": {"documentId": LOCAL_DID},
        "algorithm": RAW,
        "environment": ENV,
        "consumerAddress": consumer.address,
        "nonce": nonce,
        "signature": forger.sign(f"{consumer.address}{LOCAL_DID}{nonce}"),
    }
    async with session.post(served.base_url + "/api/services/compute", json=body) as r:
        assert r.status == 400
        answer = await r.json()
        assert answer["message"] == "Validation error" and "signature" in answer["errors"]
    assert await consumer.next_nonce() == nonce, "a refused start must not use up the nonce"
    assert len(await consumer.status()) == before

    status, [job] = await consumer.start(RAW, nonce=nonce)
    assert status == 200
    for replay in (nonce, nonce - 1):
        status, answer = await consumer.start(RAW, nonce=replay)
        assert status == 400 and "nonce" in answer["errors"]["signature"][0]
    assert len(await consumer.status()) == before + 1
    await consumer.wait_final(job["jobId"])


async def test_another_owners_job_is_refused(
    consumer: Consumer, served: Served, session: aiohttp.ClientSession
) -> None:
    status, [job] = await consumer.start(RAW)
    assert status == 200
    job_id = job["jobId"]
    other = Consumer(session, served.base_url, OTHER_KEY)
    assert await other.status(job_id) == []
    nonce = await other.next_nonce()
    async with session.put(
        served.base_url + "/api/services/compute", params=other.stop_query(job_id, nonce)
    ) as r:
        assert r.status == 404 and "error" in await r.json()
    done = await consumer.wait_final(job_id)
    assert done["stopreq"] == 0 and done["status"] == 70
    nonce = await other.next_nonce()
    async with session.get(
        served.base_url + "/api/services/computeResult",
        params=other.result_query(job_id, 0, nonce),
    ) as r:
        assert r.status == 404 and r.content_type == "application/json"
    nonce = await consumer.next_nonce()
    async with session.get(
        served.base_url + "/api/services/computeResult",
        params=consumer.result_query(job_id, 99, nonce),
    ) as r:
        assert r.status == 404 and "index" in (await r.json())["error"]


async def test_catalog_refusals_use_oceans_codes(consumer: Consumer) -> None:
    status, answer = await consumer.start(RAW, did="did:op:" + "ff" * 32)
    assert (status, answer) == (400, {"error": {"dataset": "did_not_found"}})
    status, answer = await consumer.start(RAW, did=URL_DID)
    assert (status, answer) == (400, {"error": {"dataset": "no_raw_algo_allowed"}})
    status, answer = await consumer.start(
        {"documentId": ALGO_DID}, did=LOCAL_DID, environment="nowhere"
    )
    assert status == 400 and "nowhere" in answer["error"]
    status, answer = await consumer.start({"documentId": "did:op:" + "ee" * 32}, did=URL_DID)
    assert (status, answer) == (400, {"error": {"algorithm": "did_not_found"}})


async def test_untrusted_algorithm_is_refused(consumer: Consumer) -> None:
    status, answer = await consumer.start({"documentId": UNTRUSTED_DID}, did=URL_DID)
    assert (status, answer) == (400, {"error": {"dataset": "not_trusted_algo"}})
    # A dataset with an empty list trusts any published algorithm.
    status, [job] = await consumer.start({"documentId": UNTRUSTED_DID}, did=LOCAL_DID)
    assert status == 200
    await consumer.wait_final(job["jobId"])


async def test_meta_wins_over_document_id(consumer: Consumer) -> None:
    status, [job] = await consumer.start({**RAW, "documentId": ALGO_DID})
    assert status == 200 and job["algoDID"] == "raw"
    await consumer.wait_final(job["jobId"])


async def test_initialize_compute_is_chain_less(
    consumer: Consumer, served: Served, session: aiohttp.ClientSession
) -> None:
    async def initialize(algorithm: Mapping[str, object], did: str) -> tuple[int, Any]:
        async with session.post(
            served.base_url + "/api/services/initializeCompute",
            json={
                "datasets": [{"documentId": did, "serviceId": "s"}],
                "algorithm": algorithm,
                "compute": {"env": ENV, "validUntil": 4_000_000_000},
                "consumerAddress": consumer.address,
            },
        ) as r:
            return r.status, await r.json()

    status, raw_answer = await initialize(RAW, URL_DID)
    assert (status, raw_answer) == (400, {"error": {"dataset": "no_raw_algo_allowed"}})
    status, answer = await initialize(RAW, LOCAL_DID)
    assert status == 200 and set(answer) == {"datasets"}
    async with session.post(
        served.base_url + "/api/services/initializeCompute",
        json={
            "datasets": [{"documentId": URL_DID, "serviceId": "s"}],
            "algorithm": {"documentId": ALGO_DID, "serviceId": "a"},
            "compute": {"env": ENV, "validUntil": 4_000_000_000},
            "consumerAddress": consumer.address,
        },
    ) as r:
        assert r.status == 200, await r.text()
        answer = await r.json()
    assert set(answer) == {"datasets", "algorithm"}
    assert "providerFee" not in answer["datasets"][0] and answer["datasets"][0]["validOrder"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "dataset"),
        ({"dataset": {}}, "dataset.documentId"),
        ({"dataset": {"documentId": 7}}, "dataset.documentId"),
        ({"dataset": {"documentId": LOCAL_DID}, "algorithm": [], "nonce": "x"}, "algorithm"),
    ],
)
async def test_bad_bodies_get_validation_errors(
    served: Served, session: aiohttp.ClientSession, body: dict[str, object], field: str
) -> None:
    async with session.post(served.base_url + "/api/services/compute", json=body) as r:
        assert r.status == 400
        answer = await r.json()
    assert answer["success"] is False and answer["message"] == "Validation error"
    assert field in answer["errors"] and isinstance(answer["errors"][field], list)


async def test_malformed_requests_never_give_a_500(
    served: Served, session: aiohttp.ClientSession
) -> None:
    url = served.base_url + "/api/services/compute"
    cases = [
        session.post(url, data=b"{not json", headers={"Content-Type": "application/json"}),
        session.post(url, data=b"[1, 2]", headers={"Content-Type": "application/json"}),
        session.post(url, data=b"x" * 70_000),
        session.get(served.base_url + "/api/services/nope"),
        session.patch(url),
        session.get(served.base_url + "/api/services/computeResult", params={"index": "-1"}),
        session.get(url),
    ]
    expected = [400, 400, 413, 404, 405, 400, 400]
    for request, code in zip(cases, expected, strict=True):
        async with request as r:
            assert r.status == code, await r.text()
            assert r.content_type == "application/json"
            assert "error" in await r.json() or "errors" in await r.json()


async def test_the_openapi_document_describes_what_the_server_answers(
    served: Served, session: aiohttp.ClientSession
) -> None:
    async with session.get(served.base_url + "/api/openapi.json") as r:
        doc = await r.json()
    # Every documented operation is served: called bare, it is answered or refused for
    # its input, never left unrouted (404 Not Found) or the wrong method (405).
    for path, operations in doc["paths"].items():
        for method in operations:
            async with session.request(method.upper(), served.base_url + path) as r:
                assert r.status in (200, 400, 401), (method, path, r.status, await r.text())
                assert r.content_type == "application/json"
    # What the server says is missing from an empty start is what the document requires.
    start = doc["paths"]["/api/services/compute"]["post"]
    ref = start["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    async with session.post(served.base_url + "/api/services/compute", json={}) as r:
        missing = set((await r.json())["errors"])
    assert missing == set(schema["required"])


async def test_stop_without_job_id_stops_all_unfinished_jobs_of_the_consumer(
    consumer: Consumer, served: Served, session: aiohttp.ClientSession
) -> None:
    sleeper = {"meta": {**RAW["meta"], "rawcode": "sleep 60 # stopped in bulk"}}
    ids = []
    for _ in range(2):
        status, [job] = await consumer.start(sleeper)
        assert status == 200
        ids.append(job["jobId"])
    nonce = await consumer.next_nonce()
    query = consumer.stop_query("", nonce)
    async with session.put(served.base_url + "/api/services/compute", params=query) as r:
        assert r.status == 200, await r.text()
        answered = {j["jobId"]: j for j in await r.json()}
    assert set(ids) <= set(answered) and all(answered[i]["stopreq"] == 1 for i in ids)
    for job_id in ids:
        done = await consumer.wait_final(job_id)
        assert done["terminationReason"] == "stopped"


async def test_a_status_signature_when_sent_must_be_valid(
    consumer: Consumer, served: Served, session: aiohttp.ClientSession
) -> None:
    nonce = await consumer.next_nonce()
    query = {**consumer.stop_query("", nonce), "signature": "0x" + "00" * 65}
    async with session.get(served.base_url + "/api/services/compute", params=query) as r:
        assert r.status == 400 and "signature" in (await r.json())["errors"]
    async with session.get(
        served.base_url + "/api/services/compute", params=consumer.stop_query("", nonce)
    ) as r:
        assert r.status == 200
    assert await consumer.next_nonce() == nonce, "a status read consumes no nonce"


def logs_query(consumer: Consumer, job_id: str, nonce: int) -> dict[str, str]:
    return {
        "consumerAddress": consumer.address,
        "jobId": job_id,
        "nonce": str(nonce),
        "signature": consumer.sign(f"{consumer.address}{job_id}{nonce}"),
    }


async def test_the_algorithms_output_streams_live_to_its_owner_only(
    consumer: Consumer, served: Served, session: aiohttp.ClientSession, gates: Gates
) -> None:
    second, third = gates(), gates()
    rawcode = (
        f"echo line 1; echo err 1 >&2; {second.wait}; "
        f"echo line 2; echo err 2 >&2; {third.wait}; echo line 3; echo err 3 >&2"
    )
    talker = {"meta": {**RAW["meta"], "rawcode": rawcode}}
    status, [job] = await consumer.start(talker)
    assert status == 200
    job_id = job["jobId"]
    url = served.base_url + "/api/services/computeStreamableLogs"
    while (await consumer.status(job_id))[0]["status"] < 40:
        await asyncio.sleep(0.05)

    other = Consumer(session, served.base_url, OTHER_KEY)
    async with session.get(url, params=logs_query(other, job_id, await other.next_nonce())) as r:
        assert r.status == 404 and r.content_type == "application/json"

    nonce = await consumer.next_nonce()
    async with session.get(url, params=logs_query(consumer, job_id, nonce)) as r:
        assert r.status == 200 and r.content_type == "text/plain"
        # The first line arrives while the algorithm still runs, not with its end: it
        # cannot go on before the gate opens (a log sent only at its end never comes).
        first = await asyncio.wait_for(r.content.readline(), 10)
        assert first == b"line 1\n"
        assert (await consumer.status(job_id))[0]["status"] == 40
        await second.open()
        await third.open()
        rest = await r.content.read()
    assert rest.decode().splitlines() == ["err 1", "line 2", "err 2", "line 3", "err 3"]
    assert await consumer.next_nonce() == nonce + 1, "the stream used up its nonce"

    done = await consumer.wait_final(job_id)
    assert done["status"] == 70
    async with session.get(
        url, params=logs_query(consumer, job_id, await consumer.next_nonce())
    ) as r:
        assert r.status == 404
        assert (await r.json())["error"] == "Job not found or not running"


async def test_initialize_refuses_an_image_that_cannot_be_had_and_a_missing_file(
    consumer: Consumer, served: Served, session: aiohttp.ClientSession
) -> None:
    runtime = served.extra["runtime"]
    body = {
        "datasets": [{"documentId": LOCAL_DID, "serviceId": "s"}],
        "algorithm": RAW,
        "compute": {"env": ENV},
        "consumerAddress": consumer.address,
    }
    runtime.missing_images.add("localcompute/busybox:latest")
    try:
        async with session.post(
            served.base_url + "/api/services/initializeCompute", json=body
        ) as r:
            assert r.status == 400
            error = (await r.json())["error"]
        assert error["algorithm"].startswith("image_unavailable: image localcompute/busybox:latest")
    finally:
        runtime.missing_images.clear()

    dataset = served.root / "datasets" / "local.csv"
    hidden = dataset.with_suffix(".away")
    dataset.rename(hidden)
    try:
        async with session.post(
            served.base_url + "/api/services/initializeCompute", json=body
        ) as r:
            assert r.status == 400
            error = (await r.json())["error"]
        assert error == {
            "dataset": f"file_unavailable: a file of dataset {LOCAL_DID} is missing on this host"
        }
        assert str(dataset) not in str(error)  # the provider's path stays the provider's
    finally:
        hidden.rename(dataset)
