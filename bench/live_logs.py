"""What following an algorithm's output live costs the job and the server.

Serves the provider API in this process (real Docker engine), and runs the same
talking job (a line every 20 ms for about 4 s) three ways, printing its duration
(submit → 70) and the server's resident memory:

  alone      no reader;
  followed   100 readers streaming computeStreamableLogs to the end, plus one
             that opens the stream and never reads a byte;
  flood      one reader of a job that writes 300 MB as fast as it can
             (capped at the log limit with a marker; no Docker framing).

    .venv/bin/python bench/live_logs.py [--readers 100]

The goal: "followed" as fast as "alone" (ratio near 1.0) and memory flat.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from localcompute.core.settings import (
    DatasetSettings,
    DockerSettings,
    EnvironmentSettings,
    ProviderSettings,
    ServerSettings,
    Settings,
)
from localcompute.runtime.logfile import TRUNCATION_MARKER
from localcompute.web.app import create_app
from localcompute.web.auth import ProviderKey, sign
from localcompute.web.context import ENGINE

KEY = bytes.fromhex("11" * 32)
DID = "did:op:" + "be" * 32
TALKER = "i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); usleep 20000; done"
FLOOD = "head -c 300000000 /dev/zero | tr '\\0' x | fold -w 99"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def remove_containers(instance: str) -> None:
    label = f"label=localcompute.instance={instance}"
    left = subprocess.run(
        ["docker", "ps", "-aq", "--filter", label], capture_output=True, text=True
    ).stdout.split()
    if left:
        subprocess.run(["docker", "rm", "-f", *left], capture_output=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Client:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base
        self.address = ProviderKey(KEY).address
        self.nonce = time.time_ns()

    def signed(self, *parts: str) -> dict[str, str]:
        self.nonce += 1
        message = "".join((self.address, *parts, str(self.nonce)))
        return {"nonce": str(self.nonce), "signature": sign(message, KEY)}

    async def start(self, script: str) -> str:
        body: dict[str, Any] = {
            "dataset": {"documentId": DID},
            "algorithm": {
                "meta": {
                    "rawcode": script,
                    "container": {"image": "localcompute/busybox", "entrypoint": "sh $ALGO"},
                }
            },
            "environment": "bench",
            "consumerAddress": self.address,
            **self.signed(DID),
        }
        async with self.session.post(self.base + "/api/services/compute", json=body) as r:
            assert r.status == 200, await r.text()
            return str((await r.json())[0]["jobId"])

    async def status(self, job_id: str) -> int:
        params = {"consumerAddress": self.address, "jobId": job_id}
        async with self.session.get(self.base + "/api/services/compute", params=params) as r:
            return int((await r.json())[0]["status"])

    async def wait(self, job_id: str, at_least: int) -> None:
        while await self.status(job_id) < at_least:
            await asyncio.sleep(0.02)

    async def open_logs(self, job_id: str) -> aiohttp.ClientResponse:
        params = {"consumerAddress": self.address, "jobId": job_id, **self.signed(job_id)}
        response = await self.session.get(
            self.base + "/api/services/computeStreamableLogs", params=params
        )
        assert response.status == 200, await response.text()
        return response


async def read_all(response: aiohttp.ClientResponse) -> int:
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
    response.release()
    return size


async def run(client: Client, script: str, readers: int, idle: bool) -> tuple[float, list[int]]:
    began = time.monotonic()
    job_id = await client.start(script)
    await client.wait(job_id, 40)
    streams = [await client.open_logs(job_id) for _ in range(readers)]
    stalled = await client.open_logs(job_id) if idle else None  # opened, never read
    sizes = await asyncio.gather(*(read_all(s) for s in streams))
    await client.wait(job_id, 70)
    took = time.monotonic() - began
    if stalled is not None:
        stalled.close()
    return took, list(sizes)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--readers", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lc-bench-logs-") as tmp:
        root = Path(tmp)
        dataset = root / "d.csv"
        dataset.write_text("x\n")
        port = free_port()
        settings = Settings(
            server=ServerSettings(host="127.0.0.1", port=port, data_dir=root / "var"),
            docker=DockerSettings(pull_policy="never", fetch_network="host"),
            environments=[EnvironmentSettings(id="bench", max_jobs=2, max_job_duration=300)],
            provider=ProviderSettings(private_key="0x" + "22" * 32, dataset_roots=[root]),
            datasets=[DatasetSettings(did=DID, files=[str(dataset)])],
        )
        app = create_app(settings)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        instance = app[ENGINE].instance
        try:
            # One connection per reader: the default pool of 100 would queue the 101st.
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as session:
                client = Client(session, f"http://127.0.0.1:{port}")
                await run(client, "true", 0, False)  # warm the images and caches
                base_rss = rss_mb()
                alone, _ = await run(client, TALKER, 0, False)
                followed, sizes = await run(client, TALKER, args.readers, True)
                followed_rss = rss_mb()
                flood, [flood_size] = await run(client, FLOOD, 1, False)
                flood_rss = rss_mb()
        finally:
            await runner.cleanup()
            # The server leaves running jobs to be re-attached; this one's data dir goes.
            await asyncio.to_thread(remove_containers, instance)
    print(f"alone:    {alone * 1000:.0f} ms")
    print(
        f"followed: {followed * 1000:.0f} ms with {args.readers} readers "
        f"(each got {min(sizes)}-{max(sizes)} bytes) and one that never reads; "
        f"ratio {followed / alone:.2f}"
    )
    cap = settings.docker.log_max_bytes
    capped = flood_size == cap + len(TRUNCATION_MARKER % cap)
    print(
        f"flood:    {flood * 1000:.0f} ms, the reader got {flood_size} bytes: "
        f"{'the cap plus its marker' if capped else 'NOT the cap plus its marker'}"
    )
    print(
        f"server memory: {base_rss:.0f} MB before, {followed_rss:.0f} MB after the "
        f"followed run, {flood_rss:.0f} MB after the flood"
    )


if __name__ == "__main__":
    asyncio.run(main())
