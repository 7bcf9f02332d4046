"""What the pool shows while a job holds its share: every view and /metrics agree, and all
of it is released when the job ends."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from localcompute.runtime.local import hostinfo
from localcompute.testing import FakeRuntime
from tests.served import Consumer, fake_server

RAW = {
    "meta": {
        "rawcode": "echo result > $OUTPUTS/r.txt",
        "container": {"image": "localcompute/busybox", "entrypoint": "sh $ALGO"},
    }
}


async def views(session: aiohttp.ClientSession, base: str) -> tuple[Any, Any, str]:
    async with session.get(base + "/node/api/services/computeEnvironments") as r:
        node = await r.json()
    async with session.get(base + "/api/services/computeEnvironments") as r:
        classic = await r.json()
    async with session.get(base + "/metrics") as r:
        metrics = await r.text()
    return node, next(iter(classic.values())), metrics


def node_in_use(node: Any) -> dict[str, float]:
    [env] = node
    return {r["id"]: r["inUse"] for r in env["resources"]}


async def test_every_view_shows_what_a_running_job_holds_and_its_release(
    tmp_path: Path,
) -> None:
    async with fake_server(tmp_path) as served, aiohttp.ClientSession() as session:
        runtime = served.extra["runtime"]
        assert isinstance(runtime, FakeRuntime)
        runtime.slow_stages["algorithm"] = 60  # held at 40 until stopped
        consumer = Consumer(session, served.base_url)
        status, [job] = await consumer.start(RAW)
        assert status == 200
        job_id = job["jobId"]
        for _ in range(200):
            if (await consumer.status(job_id))[0]["status"] == 40:
                break
            await asyncio.sleep(0.05)
        node, classic, metrics = await views(session, served.base_url)
        # The served test environment: 1 CPU, 1 GiB RAM, 1 GiB disk per job.
        assert node_in_use(node) == {"cpu": 1, "ram": 1, "disk": 1}
        assert node[0]["available"] is True
        assert node[0]["diskQuota"]["mechanism"] in ("xfs", "loop", "watch")
        assert classic[0]["currentJobs"] == 1 and classic[0]["available"] is True
        assert 'localcompute_pool_in_use{environment="test",resource="cpu"} 1.0' in metrics
        assert 'localcompute_pool_capacity{resource="cpu"}' in metrics

        nonce = await consumer.next_nonce()
        query = consumer.stop_query(job_id, nonce)
        async with session.put(served.base_url + "/api/services/compute", params=query) as r:
            assert r.status == 200
        await consumer.wait_final(job_id)
        node, classic, metrics = await views(session, served.base_url)
        assert node_in_use(node) == {"cpu": 0, "ram": 0, "disk": 0}
        assert classic[0]["currentJobs"] == 0
        assert 'localcompute_pool_in_use{environment="test",resource="cpu"} 0.0' in metrics


async def wait_status(consumer: Consumer, job_id: str, status: int) -> None:
    for _ in range(400):
        if (await consumer.status(job_id))[0]["status"] == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached status {status}")


async def stop(consumer: Consumer, session: aiohttp.ClientSession, job_id: str) -> None:
    query = consumer.stop_query(job_id, await consumer.next_nonce())
    async with session.put(consumer.base + "/api/services/compute", params=query) as r:
        assert r.status == 200
    await consumer.wait_final(job_id)


async def test_environments_that_contend_start_and_their_jobs_wait_for_each_other(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two environments each asking 55 % of the host's RAM: the server starts, says they
    contend, and a job of one waits while a job of the other runs."""
    ram_gb = hostinfo.memory_bytes() * 0.55 / 1024**3
    two = "".join(
        f'[[environments]]\nid = "{env}"\ncpu = 0.5\nram_gb = {ram_gb:.3f}\n\n'
        for env in ("ram-a", "ram-b")
    )
    caplog.set_level(logging.INFO, logger="localcompute")
    async with (
        fake_server(tmp_path, environments_first=two) as served,
        aiohttp.ClientSession() as session,
    ):
        assert (
            "pool: environments 'ram-a' and 'ram-b' contend for ram: one job of each does not "
            "fit the pool at once, so they wait for each other"
        ) in caplog.text
        runtime = served.extra["runtime"]
        assert isinstance(runtime, FakeRuntime)
        runtime.slow_stages["algorithm"] = 60  # held at 40 until stopped
        consumer = Consumer(session, served.base_url)
        status, [a] = await consumer.start(RAW, environment="ram-a")
        assert status == 200, a
        await wait_status(consumer, a["jobId"], 40)
        status, [b] = await consumer.start(RAW, environment="ram-b")
        assert status == 200, b
        await asyncio.sleep(0.2)  # a scheduler that let it in would have by now
        assert (await consumer.status(b["jobId"]))[0]["status"] == 1  # waits for the RAM
        await stop(consumer, session, a["jobId"])
        await wait_status(consumer, b["jobId"], 40)
        await stop(consumer, session, b["jobId"])
