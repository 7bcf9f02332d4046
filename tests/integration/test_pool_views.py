"""What the pool shows while a job holds its share: every view and /metrics agree, and all
of it is released when the job ends."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

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
