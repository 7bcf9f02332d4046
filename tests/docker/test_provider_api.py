"""The provider compute API over HTTP, against a server started as the README starts it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import aiohttp
import pytest

from tests.conftest import docker_ps
from tests.docker.served import (
    ALGO_DID,
    CONSUMER,
    ENV,
    LOCAL_DID,
    OTHER_KEY,
    UNTRUSTED_DID,
    URL_DID,
    Consumer,
    Served,
    running_server,
)

pytestmark = pytest.mark.docker

RAW = {
    "meta": {
        "rawcode": "cat /data/inputs/*/0 > $OUTPUTS/seen.txt; echo ok; ls /data/ddos",
        "container": {"image": "localcompute/busybox", "tag": "latest", "entrypoint": "sh $ALGO"},
    }
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, busybox_image: str) -> Iterator[Served]:
    with running_server(tmp_path_factory.mktemp("provider")) as server:
        yield server


@pytest.fixture
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


async def test_whole_flow_as_ocean_py_sends_it(
    consumer: Consumer, served: Served, session: aiohttp.ClientSession
) -> None:
    status, body = await consumer.start(RAW)
    assert status == 200, body
    [job] = body
    assert job["status"] in (1, 10, 20) and job["statusText"]
    assert job["owner"] == CONSUMER and job["agreementId"] == "0xorder"
    assert job["algoDID"] == "raw" and job["inputDID"] == [LOCAL_DID]
    assert job["dateFinished"] is None and job["results"] == []
    job_id = job["jobId"]

    done = await consumer.wait_final(job_id)
    assert (done["status"], done["statusText"], done["exitCode"]) == (70, "Job completed", 0)
    assert done["terminationReason"] == "completed"
    assert float(done["dateFinished"]) >= float(done["dateCreated"])
    assert [r["type"] for r in done["results"]] == [
        "output",
        "algorithmLog",
        "configrationLog",
        "filteringLog",
        "publishLog",
    ]
    assert len(done["resultsUrls"]) == 5 and done["algorithmLogUrl"] == done["resultsUrls"][1]

    # Every result, whole, through the signed computeResult (query string, v = 0/1).
    for index, result in enumerate(done["results"]):
        nonce = await consumer.next_nonce()
        async with session.get(
            served.base_url + "/api/services/computeResult",
            params=consumer.result_query(job_id, index, nonce),
        ) as r:
            assert r.status == 200, await r.text()
            data = await r.read()
            assert len(data) == result["filesize"]
            assert r.headers["Content-Disposition"] == f"attachment;filename={result['filename']}"
            assert r.headers["Access-Control-Expose-Headers"] == "Content-Disposition"
    # The output holds the local dataset, and the DDO reached /data/ddos.
    nonce = await consumer.next_nonce()
    async with session.get(
        served.base_url + "/api/services/computeResult",
        params=consumer.result_query(job_id, 0, nonce),
    ) as r:
        assert await r.read() == b"local dataset\n"
    # By Range.
    nonce = await consumer.next_nonce()
    async with session.get(
        served.base_url + "/api/services/computeResult",
        params=consumer.result_query(job_id, 0, nonce),
        headers={"Range": "bytes=6-12"},
    ) as r:
        assert r.status == 206
        assert await r.read() == b"dataset"
        assert r.headers["Content-Range"] == "bytes 6-12/14"
    nonce = await consumer.next_nonce()
    async with session.get(
        served.base_url + "/api/services/computeResult",
        params=consumer.result_query(job_id, 1, nonce),
    ) as r:
        log = await r.text()
        assert "ok" in log and LOCAL_DID.removeprefix("did:op:") in log

    # Stop on a finished job changes nothing; delete removes everything but the row.
    nonce = await consumer.next_nonce()
    async with session.put(
        served.base_url + "/api/services/compute", params=consumer.stop_query(job_id, nonce)
    ) as r:
        assert r.status == 200
        [stopped] = await r.json()
        assert stopped["status"] == 70 and stopped["stopreq"] == 0
    nonce = await consumer.next_nonce()
    async with session.delete(
        served.base_url + "/api/services/compute", params=consumer.stop_query(job_id, nonce)
    ) as r:
        assert r.status == 200, await r.text()
        [deleted] = await r.json()
    assert deleted["removed"] == 1 and deleted["results"] == []
    assert not (served.root / "var" / "jobs" / job_id).exists()
    assert docker_ps(f"label=localcompute.job_id={job_id}") == []
    [after] = await consumer.status(job_id)
    assert after["removed"] == 1


async def test_ocean_js_shapes_stop_and_delete_without_nonce(
    consumer: Consumer, served: Served, session: aiohttp.ClientSession
) -> None:
    sleeper = {"meta": {**RAW["meta"], "rawcode": "echo begun > $OUTPUTS/b.txt; sleep 60"}}
    status, body = await consumer.start(sleeper, js=True)
    assert status == 200, body
    job_id = body[0]["jobId"]
    # The job sleeps for a minute: no results yet.
    async with session.get(
        served.base_url + "/api/services/computeResult",
        params=consumer.result_query(job_id, 0, await consumer.next_nonce()),
    ) as r:
        assert r.status == 404 and "No results" in (await r.json())["error"]
    nonce = await consumer.next_nonce()
    message = f"{consumer.address}{job_id}{LOCAL_DID}{nonce}"
    async with session.put(
        served.base_url + "/api/services/compute",
        json={
            "signature": consumer.sign(message, js=True),
            "documentId": LOCAL_DID,
            "consumerAddress": consumer.address,
            "nonce": str(nonce),
            "jobId": job_id,
        },
    ) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())[0]["stopreq"] == 1
    done = await consumer.wait_final(job_id)
    assert done["status"] == 70 and done["terminationReason"] == "stopped"
    # ocean.js 3.x sends no nonce with delete: it signs with the stored nonce + 1.
    nonce = await consumer.next_nonce()
    message = f"{consumer.address}{job_id}{LOCAL_DID}{nonce}"
    async with session.delete(
        served.base_url + "/api/services/compute",
        json={
            "documentId": LOCAL_DID,
            "consumerAddress": consumer.address,
            "jobId": job_id,
            "signature": consumer.sign(message, js=True),
        },
    ) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())[0]["removed"] == 1


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


async def test_published_algorithm_on_a_url_dataset(consumer: Consumer) -> None:
    status, [job] = await consumer.start({"documentId": ALGO_DID}, did=URL_DID)
    assert status == 200
    assert job["algoDID"] == ALGO_DID
    done = await consumer.wait_final(job["jobId"])
    assert done["status"] == 70 and done["exitCode"] == 0, done


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


async def test_openapi_matches_the_router(served: Served, session: aiohttp.ClientSession) -> None:
    async with session.get(served.base_url + "/api/openapi.json") as r:
        doc = await r.json()
    from localcompute.web.routes import all_routes

    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == {(route.method, route.path) for route in all_routes()}
    start = doc["paths"]["/api/services/compute"]["post"]
    assert "dataset" in start["requestBody"]["content"]["application/json"]["schema"]["properties"]


def test_results_of_a_deleted_job_are_gone_from_disk(served: Served) -> None:
    jobs = served.root / "var" / "jobs"
    leftovers = [p for p in jobs.glob("*/data/inputs")] if jobs.exists() else []
    assert leftovers == [], "inputs must be scrubbed once results are published"


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
