"""Parallel trivial jobs through the engine against bare Docker's parallel rate.

For each (N, P): N trivial jobs submitted at once to an environment that runs P at
a time, timed from the first submit to the last job at 70 (jobs/s), against N of
the same three-container chains run bare by P threads through the low-level API
(chains/s), alternating in one run. The goal is a ratio of at least 0.95.

With --queue M: M jobs submitted at once to the same environment, run to 70; the
latency (submit to 70) and the own time (admission to 70) of the first 10 and the
last 10 show whether the per-job overhead stays flat as the queue drains.

    .venv/bin/python bench/throughput.py [--case 16x4 --case 64x8] [--queue 1000]

(--queue alone runs only the queue.)
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import statistics
import sys
import tempfile
import time
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import verdict
from bench.job_overhead import BUSYBOX, SCRIPT, lean_chain, phase_line
from localcompute import AlgorithmSpec, Engine, Job, JobSpec, JobStatus
from localcompute.core.settings import (
    DockerSettings,
    EnvironmentSettings,
    PoolSettings,
    ServerSettings,
    Settings,
)

# How much longer the last jobs of a long queue may take than the first, admission to
# 70, for the overhead to count as flat: timings on a shared 2-core machine are noisy.
FLAT = 1.25


def engine_for(data_dir: Path, parallel: int) -> Engine:
    # Small jobs, so that the pool of a 2-core machine admits P of them at once.
    env = EnvironmentSettings(
        id="bench", max_jobs=parallel, cpu=0.1, ram_gb=0.1, disk_gb=0.02, max_job_duration=600
    )
    return Engine(
        Settings(
            server=ServerSettings(data_dir=data_dir),
            docker=DockerSettings(pull_policy="never", fetch_network="host"),
            environments=[env],
            pool=PoolSettings.model_validate({"disk_quota": "watch"}),
        )
    )


SPEC = JobSpec(
    environment="bench",
    algorithm=AlgorithmSpec(image=BUSYBOX, entrypoint="sh $ALGO", rawcode=SCRIPT),
)


async def run_jobs(engine: Engine, n: int) -> tuple[float, list[Job]]:
    """Submit n jobs at once; the wall time to the last at 70, and the jobs."""
    start = time.perf_counter()
    submitted = [await engine.submit(SPEC) for _ in range(n)]
    done = await asyncio.gather(*(engine.wait(job_id) for job_id in submitted))
    for job in done:
        assert job.status == JobStatus.JOB_COMPLETED, job.status_text
    return time.perf_counter() - start, list(done)


def bare_parallel(api: docker.APIClient, work: Path, n: int, parallel: int) -> float:
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda i: lean_chain(api, work / f"c{i}"), range(n)))
    return time.perf_counter() - start


async def throughput(tmp: Path, n: int, parallel: int, repeats: int) -> None:
    engine = engine_for(tmp / f"var-{n}x{parallel}", parallel)
    await engine.start()
    api = docker.APIClient(version="auto", max_pool_size=parallel * 2)
    engine_rates, bare_rates = [], []
    jobs: list[Job] = []
    try:
        await run_jobs(engine, parallel)  # warm-up
        for r in range(repeats):
            wall, done = await run_jobs(engine, n)
            jobs += done
            engine_rates.append(n / wall)
            bare = await asyncio.to_thread(bare_parallel, api, tmp / f"bare-{n}-{r}", n, parallel)
            bare_rates.append(n / bare)
    finally:
        api.close()
        await engine.close()
    e, b = statistics.median(engine_rates), statistics.median(bare_rates)
    print(
        f"N={n} P={parallel}: engine {e:.2f} jobs/s, bare threaded {b:.2f} chains/s, "
        f"ratio {e / b:.2f} (medians of {repeats}); ≥ 0.95: {verdict(e / b >= 0.95)}",
        flush=True,
    )
    print(f"  engine phases: {phase_line(jobs)}", flush=True)


async def queue(tmp: Path, m: int, parallel: int) -> None:
    engine = engine_for(tmp / "var-queue", parallel)
    await engine.start()
    try:
        wall, done = await run_jobs(engine, m)
    finally:
        await engine.close()
    done.sort(key=lambda job: job.date_created)

    def latency(job: Job) -> float:
        return (job.date_finished or 0) - job.date_created

    def own(job: Job) -> float:
        return (job.date_finished or 0) - (job.fetch_started_at or 0)

    first, last = done[:10], done[-10:]
    rate = m / wall
    submitting = done[-1].date_created - done[0].date_created
    print(
        f"{m} jobs queued at once, P={parallel}: submitted in {submitting:.1f} s, "
        f"all at 70 after {wall:.1f} s ({rate:.2f} jobs/s)"
    )
    print(f"  phases, first 10: {phase_line(first)}")
    print(f"  phases, last 10:  {phase_line(last)}")
    # From the jobs' own timestamps: this bench only starts waiting once all are submitted.
    lat_first = statistics.median(latency(j) for j in first)
    lat_last = statistics.median(latency(j) for j in last)
    print(f"  latency submit → 70: first 10 median {lat_first:.2f} s, last 10 {lat_last:.2f} s")
    own_first = statistics.median(own(j) for j in first) * 1000
    own_last = statistics.median(own(j) for j in last) * 1000
    # Flat: the last jobs of the queue take no longer than the first, within noise.
    print(
        f"  own time admission → 70: first 10 median {own_first:.0f} ms, "
        f"last 10 {own_last:.0f} ms, ratio {own_last / own_first:.2f}; "
        f"flat (≤ {FLAT:.2f}): {verdict(own_last / own_first <= FLAT)}"
    )


async def main(cases: list[tuple[int, int]], repeats: int, queue_size: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for n, parallel in cases:
            await throughput(Path(tmp), n, parallel, repeats)
        if queue_size:
            await queue(Path(tmp), queue_size, 8)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", help="NxP, e.g. 16x4 (repeatable)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--queue", type=int, default=0, help="jobs queued at once (e.g. 1000)")
    args = parser.parse_args()
    default = [] if args.queue and not args.case else ["16x4", "64x8"]
    cases = [tuple(int(x) for x in c.split("x")) for c in (args.case or default)]
    asyncio.run(main([(n, p) for n, p in cases], args.repeats, args.queue))
