"""How soon a status change reaches the pages that watch it, with 1 to 1,000 of them open.

One server process (`localcompute serve`, the real Docker engine) and, in this process,
N open dashboard streams (/ui/events). Ten busybox jobs run, two at a time; every stream
times each event from the moment the store wrote it (the event's `at`) to its arrival.
Prints, per N, the p50, p99 and worst delay, the events each stream got, and the p99's
ratio to one stream's: the floor is one reader, so the ratio is what fan-out costs.

    .venv/bin/python bench/event_stream.py [--streams 1 100 1000] [--jobs 10]

Goal: every stream sent every event, and the dashboard's "within 200 ms" with room to
spare for the pages an operator opens (p99 at 100 streams well under it); at 1,000 the
readers of this process share the two cores with the server and Docker, and the p99 is
measured, not promised. Polling at 0.25 s, the clients' default, is 125 ms late on
average before its request is even answered, and costs a request per client per poll.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.served import Consumer, start_server, stop_server

ECHO = {
    "meta": {
        "rawcode": "echo hi > $OUTPUTS/r.txt",
        "container": {"image": "localcompute/busybox", "entrypoint": "sh $ALGO"},
    }
}
CONNECTIONS = "[connections]\nmax_connections_per_ip = 4096\n"


AT = re.compile(rb'"at":([0-9.]+)')


async def watch(
    session: aiohttp.ClientSession, base: str, ready: asyncio.Event, delays: list[float]
) -> int:
    """One page's stream: each event's delay into `delays`; how many it got. It reads
    whole chunks and only the events' times: the bench's readers must cost little beside
    the server they measure."""
    got, pending = 0, b""
    async with session.get(base + "/ui/events") as r:
        async for chunk in r.content.iter_any():
            arrived = time.time()
            whole, _, pending = (pending + chunk).rpartition(b"\n\n")  # complete frames
            if not ready.is_set() and b"event: ready" in whole:
                ready.set()
            for at in AT.findall(whole):  # each status event's `at`
                delays.append(arrived - float(at))
                got += 1
    return got


async def one_round(base: str, streams: int, jobs: int) -> tuple[list[float], list[int]]:
    delays: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        readies = [asyncio.Event() for _ in range(streams)]
        watchers = [asyncio.create_task(watch(session, base, e, delays)) for e in readies]
        await asyncio.gather(*(e.wait() for e in readies))
        consumer = Consumer(session, base)
        ids = []
        for _ in range(jobs):
            status, [job] = await consumer.start(ECHO)
            assert status == 200, job
            ids.append(job["jobId"])
        for job_id in ids:
            await consumer.wait_final(job_id, timeout=300)
        await asyncio.sleep(0.5)  # the last events on their way
        for task in watchers:
            task.cancel()
        counts = []
        for task in watchers:
            try:
                counts.append(await task)
            except asyncio.CancelledError:
                counts.append(-1)
    return delays, counts


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--profile", help="py-spy the server into this speedscope file")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a socket per stream
    with tempfile.TemporaryDirectory() as folder:
        served = start_server(Path(folder), extra=CONNECTIONS)
        assert served.process is not None
        record = ["py-spy", "record", "-f", "speedscope", "--nonblocking", "-o"]
        spy = (
            subprocess.Popen([*record, args.profile, "--pid", str(served.process.pid)])
            if args.profile
            else None
        )
        try:
            floor = None
            print(f"{'streams':>8} {'events':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} ratio")
            for n in args.streams:
                delays, _ = asyncio.run(one_round(served.base_url, n, args.jobs))
                per_stream = len(delays) / n
                p50, p99 = percentile(delays, 0.5) * 1e3, percentile(delays, 0.99) * 1e3
                floor = floor or p99
                print(
                    f"{n:>8} {per_stream:>8.1f} {p50:>8.1f} {p99:>8.1f} "
                    f"{max(delays) * 1e3:>8.1f} {p99 / floor:>5.2f}x",
                    flush=True,
                )
                assert per_stream == args.jobs * 8, "every stream gets every event"
        finally:
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait()
            stop_server(served)


if __name__ == "__main__":
    main()
