"""With the Docker engine gone, starts answer 503 while status and results still work."""

from __future__ import annotations

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


async def test_docker_down_refuses_starts_but_serves_status_and_results(tmp_path: Path) -> None:
    async with fake_server(tmp_path) as served, aiohttp.ClientSession() as session:
        runtime = served.extra["runtime"]
        assert isinstance(runtime, FakeRuntime)
        consumer = Consumer(session, served.base_url)
        status, [job] = await consumer.start(RAW)
        assert status == 200
        done = await consumer.wait_final(job["jobId"])
        assert done["status"] == 70 and done["results"][0]["filename"] == "r.txt"

        runtime.down = True  # the engine has gone away
        try:
            nonce = await consumer.next_nonce()
            status, answer = await consumer.start(RAW, nonce=nonce)
            assert status == 503 and "Docker" in answer["error"]
            assert await consumer.next_nonce() == nonce, "a refused start keeps the nonce"
            [again] = await consumer.status(job["jobId"])
            assert again["status"] == 70
            async with session.get(
                served.base_url + "/api/services/computeResult",
                params=consumer.result_query(job["jobId"], 0, nonce),
            ) as r:
                assert r.status == 200 and await r.read() == b"result\n"
        finally:
            runtime.down = False


async def test_healthz_says_which_check_failed_and_answers_503(tmp_path: Path) -> None:
    async with fake_server(tmp_path) as served, aiohttp.ClientSession() as session:
        runtime = served.extra["runtime"]
        assert isinstance(runtime, FakeRuntime)

        async def health(path: str = "/healthz") -> tuple[int, dict[str, Any]]:
            async with session.get(served.base_url + path) as r:
                return r.status, await r.json()

        code, body = await health()
        assert (code, body["status"]) == (200, "ok")
        assert set(body["checks"]) == {"store", "docker", "helper_image"}
        assert all(c["ok"] and c["ms"] >= 0 and c["error"] is None for c in body["checks"].values())
        assert (await health("/health"))[0] == 200

        runtime.missing_images.add("localcompute/helper:latest")
        code, body = await health()
        assert (code, body["status"]) == (503, "unavailable")
        assert "localcompute images build" in body["checks"]["helper_image"]["error"]
        assert body["checks"]["store"]["ok"]
        runtime.missing_images.clear()

        runtime.down = True
        code, body = await health()
        assert code == 503 and not body["checks"]["docker"]["ok"]
        runtime.down = False
        assert (await health())[0] == 200


async def test_metrics_count_jobs_phases_requests_and_bytes_for_allowed_readers_only(
    tmp_path: Path,
) -> None:
    async with fake_server(tmp_path / "a") as served, aiohttp.ClientSession() as session:
        consumer = Consumer(session, served.base_url)
        status, body = await consumer.start(RAW)
        assert status == 200, body
        job_id = body[0]["jobId"]
        await consumer.wait_final(job_id)
        nonce = await consumer.next_nonce()
        async with session.get(
            served.base_url + "/api/services/computeResult",
            params=consumer.result_query(job_id, 0, nonce),
        ) as r:
            size = len(await r.read())
        async with session.get(served.base_url + "/metrics") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
            text = await r.text()
        assert 'localcompute_jobs{environment="test",status="70"} 1.0' in text
        assert 'localcompute_slots{environment="test"} 2.0' in text
        assert 'localcompute_phase_seconds_count{phase="algorithm"} 1.0' in text
        assert f"localcompute_result_bytes_total {float(size)}" in text
        assert 'route="/api/services/compute"' in text and job_id not in text
        assert "signature" not in text.lower()

    strict = 'metrics_allow = ["10.0.0.0/8"]'
    async with (
        fake_server(tmp_path / "b", server_extra=strict) as served,
        aiohttp.ClientSession() as s,
        s.get(served.base_url + "/metrics") as r,
    ):
        assert r.status == 403 and "metrics_allow" in (await r.json())["error"]
