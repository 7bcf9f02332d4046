"""The provider compute API over HTTP, against a server started as the README starts it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from tests.conftest import docker_ps
from tests.served import (
    ALGO_DID,
    CONSUMER,
    LOCAL_DID,
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
        "receipt",
    ]
    assert len(done["resultsUrls"]) == 6 and done["algorithmLogUrl"] == done["resultsUrls"][1]

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


async def test_published_algorithm_on_a_url_dataset(consumer: Consumer) -> None:
    status, [job] = await consumer.start({"documentId": ALGO_DID}, did=URL_DID)
    assert status == 200
    assert job["algoDID"] == ALGO_DID
    done = await consumer.wait_final(job["jobId"])
    assert done["status"] == 70 and done["exitCode"] == 0, done


async def test_inputs_are_scrubbed_once_results_are_published(
    consumer: Consumer, served: Served
) -> None:
    status, [job] = await consumer.start(RAW)
    assert status == 200
    done = await consumer.wait_final(job["jobId"])
    assert done["status"] == 70 and done["results"]
    folder = served.root / "var" / "jobs" / job["jobId"]
    assert folder.is_dir(), "the results are still there to download"
    assert not (folder / "data" / "inputs").exists(), "the dataset must not outlive the job"
