"""Polite pollers beside an abusive one: what the request buckets buy.

One server process (`localcompute serve`, its default [limits]: 5 signed reads a second
per address and job, 30 at once) with a finished job for each of 5 consumers. Four polite
clients poll their job's signed status (as ocean.py sends it) once a second each, first
alone, then while a fifth client, in a process of its own, sends signed status reads of
its one job at 500 a second. Prints the polite clients' p50 and p99 in both phases and
their ratio, and what the abuser got: answered against refused with 429.

    .venv/bin/python bench/polling.py [--seconds 30] [--rate 500]

Goal: the polite p99 under the abuse within 2 x its value alone, no polite poll refused,
and the abuser answered 429. Needs the Docker engine (the server starts as a user's does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp

from localcompute.core.jobspec import AlgorithmSpec, JobSpec
from localcompute.core.signing import Key
from localcompute.store import JobStore

POLITE = 4
PATH = "/api/services/compute"
# Fewer connections than the server's max_connections_per_ip (64): every client here is
# 127.0.0.1, and the abuser is to meet the buckets, not the connection cap.
ABUSER_CONNECTIONS = 16


def status_query(key: Key, job_id: str) -> dict[str, str]:
    """ocean.py's signed status: over address + jobId + nonce; it uses up no nonce, so one
    query is good for every poll."""
    nonce = str(time.time_ns() // 1_000_000)
    return {
        "consumerAddress": key.address,
        "jobId": job_id,
        "nonce": nonce,
        "signature": key.sign(f"{key.address}{job_id}{nonce}"),
    }


async def fill(data_dir: Path, keys: list[Key]) -> list[str]:
    """One finished job per key, written to the store as if it had run."""
    store = JobStore(data_dir / "localcompute.sqlite")
    await store.open()
    algorithm = AlgorithmSpec(image="localcompute/busybox", entrypoint="sh $ALGO", rawcode="true")
    jobs = []
    async with store.transaction() as tx:
        for key in keys:
            spec = JobSpec(
                environment="bench", owner=key.address, algorithm=algorithm, api="provider"
            )
            jobs.append(await tx.insert_job(spec, max_duration=60))
    await store.close()
    with sqlite3.connect(data_dir / "localcompute.sqlite") as db:
        db.execute(
            "UPDATE jobs SET status = 70, termination_reason = 'completed', "
            "date_finished = date_created + 1"
        )
    return jobs


async def polite_client(
    session: aiohttp.ClientSession, url: str, query: dict[str, str], seconds: float, offset: float
) -> tuple[list[float], list[int]]:
    """Polls once a second for `seconds`: each poll's latency and status."""
    await asyncio.sleep(offset)
    latencies, codes = [], []
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        sent = time.perf_counter()
        async with session.get(url, params=query) as r:
            await r.read()
            codes.append(r.status)
        latencies.append(time.perf_counter() - sent)
        await asyncio.sleep(max(0.0, 1 - (time.perf_counter() - sent)))
    return latencies, codes


async def polite_phase(
    url: str, queries: list[dict[str, str]], seconds: float
) -> tuple[list[float], list[int]]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/") as r:  # the connection made before the clock runs
            await r.read()
        results = await asyncio.gather(
            *(
                polite_client(session, url + PATH, q, seconds, offset=i / POLITE)
                for i, q in enumerate(queries)
            )
        )
    return [x for lat, _ in results for x in lat], [c for _, codes in results for c in codes]


async def abuse(url: str, query: dict[str, str], rate: float, seconds: float) -> dict[str, int]:
    """Open loop: a request every 1/rate s whatever the answers, counted by status."""
    counts: dict[str, int] = {}
    connector = aiohttp.TCPConnector(limit=ABUSER_CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            try:
                async with session.get(url + PATH, params=query) as r:
                    await r.read()
                    key = str(r.status)
            except aiohttp.ClientError as e:
                key = type(e).__name__
            counts[key] = counts.get(key, 0) + 1

        tasks: set[asyncio.Task[None]] = set()
        began = time.monotonic()
        sent = 0
        while (now := time.monotonic() - began) < seconds:
            due = int(now * rate) + 1
            for _ in range(due - sent):
                task = asyncio.create_task(one())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            sent = due
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*tasks)
    counts["sent"] = sent
    return counts


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def serve(work: Path) -> tuple[subprocess.Popen[str], str]:
    (work / "c.toml").write_text(
        '[server]\nport = 0\ndata_dir = "var"\n[docker]\npull_policy = "never"\n'
        '[[environments]]\nid = "bench"\nmax_jobs = 2\n'
        # [limits] as shipped: exempt_loopback = false, so this host's clients are limited.
    )
    command = [sys.executable, "-m", "localcompute", "serve", "--config", str(work / "c.toml")]
    server = subprocess.Popen(
        [*command, "--log-level", "warning"], stdout=subprocess.PIPE, text=True, cwd=work
    )
    assert server.stdout is not None
    url = server.stdout.readline().split()[-1]
    # Whatever it prints later must not fill the pipe and stall it.
    threading.Thread(target=server.stdout.read, daemon=True).start()
    return server, url


def main(seconds: float, rate: float) -> None:
    keys = [Key.random() for _ in range(POLITE + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "var").mkdir()
        jobs = asyncio.run(fill(work / "var", keys))
        queries = [status_query(k, j) for k, j in zip(keys, jobs, strict=True)]
        server, url = serve(work)
        try:
            print(f"{POLITE} polite clients, a signed status poll of their job once a second each")
            asyncio.run(polite_phase(url, queries[:POLITE], 3))  # warm-up: caches, code paths
            alone, alone_codes = asyncio.run(polite_phase(url, queries[:POLITE], seconds))
            abuse_args = ["--rate", str(rate), "--seconds", str(seconds + 2)]
            abuser = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--abuse",
                    url,
                    json.dumps(queries[POLITE]),
                    *abuse_args,
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            time.sleep(1)  # its burst spent, the abuse at its steady state
            loaded, loaded_codes = asyncio.run(polite_phase(url, queries[:POLITE], seconds))
            out, _ = abuser.communicate(timeout=seconds + 60)
            counts = json.loads(out)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)

    def ms(values: list[float], p: float) -> str:
        return f"{percentile(values, p) * 1000:6.2f} ms"

    print(f"  alone:        p50 {ms(alone, 50)}, p99 {ms(alone, 99)} ({len(alone)} polls)")
    print(f"  under abuse:  p50 {ms(loaded, 50)}, p99 {ms(loaded, 99)} ({len(loaded)} polls)")
    ratio = percentile(loaded, 99) / percentile(alone, 99)
    refused_polite = sum(c != 200 for c in alone_codes + loaded_codes)
    print(
        f"  p99 under abuse / alone: {ratio:.2f} (goal: <= 2); polite polls refused: "
        f"{refused_polite}"
    )
    answered, refused = counts.get("200", 0), counts.get("429", 0)
    others = {k: v for k, v in counts.items() if k not in ("200", "429", "sent")}
    sent, took = counts["sent"], seconds + 2
    print(
        f"abuser: {sent} sent in {took:g} s ({sent / took:.0f}/s), {answered} answered, "
        f"{refused} refused with 429" + (f", other: {others}" if others else "")
    )
    met = ratio <= 2 and refused > 0 and refused_polite == 0
    print("goal met" if met else "goal missed")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--abuse", nargs=2, metavar=("URL", "QUERY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.abuse:
        url, query = args.abuse
        print(json.dumps(asyncio.run(abuse(url, json.loads(query), args.rate, args.seconds))))
    else:
        main(args.seconds, args.rate)
