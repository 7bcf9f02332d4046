"""Fair turns between consumers, measured on the engine (SQLite store, the FakeRuntime's
host processes for containers: the bench is of admission, not of Docker).

  flood   One consumer queues 1,000 trivial jobs at once, then a second submits one. Goal:
          the second's job starts within one job's length of its submit (the next free
          slot is its), and every one of the first's jobs still completes.
  shares  Ten consumers, mixed loads (quarter- and half-core jobs, 0.1 to 0.4 s), each
          keeping jobs waiting. Goal: over the run each one's core-seconds are within
          10 % of its fair share (a tenth), printed as a table.

    .venv/bin/python bench/fair_turns.py [--case flood|shares] [--jobs 1000] [--window 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import verdict
from localcompute import AlgorithmSpec, Engine, JobSpec
from localcompute.core.limit_settings import LimitSettings
from localcompute.core.models import Job, JobQuery
from localcompute.core.settings import (
    DockerSettings,
    EnvironmentSettings,
    ServerSettings,
    Settings,
)
from localcompute.core.status import JobStatus
from localcompute.testing import FakeRuntime


def settings(folder: Path, *envs: EnvironmentSettings) -> Settings:
    return Settings(
        server=ServerSettings(host="127.0.0.1", port=0, data_dir=folder),
        docker=DockerSettings(pull_policy="never", fetch_network="host", stop_grace=1),
        environments=list(envs),
        limits=LimitSettings(max_waiting=0),  # the flood is the point
    )


def spec(owner: str, env: str, rawcode: str) -> JobSpec:
    algorithm = AlgorithmSpec(image="busybox", entrypoint="sh $ALGO", rawcode=rawcode)
    return JobSpec(environment=env, owner=owner, algorithm=algorithm)


def held(job: Job, start: float = 0.0, end: float = float("inf")) -> float:
    """The core-seconds `job` held within [start, end] (as fair turns count them)."""
    since, until = job.fetch_started_at, job.date_finished or time.time()
    if job.allocation is None or since is None:
        return 0.0
    return job.allocation.cpu * max(0.0, min(until, end) - max(since, start))


async def flood(jobs: int) -> bool:
    with tempfile.TemporaryDirectory() as folder:
        env = EnvironmentSettings(id="e", cpu=0.5, max_jobs=2, max_job_duration=60)
        engine = Engine(settings(Path(folder), env), runtime=FakeRuntime())
        await engine.start()
        try:
            flood_ids = [await engine.submit(spec("0xaa", "e", "true")) for _ in range(jobs)]
            submitted = time.time()
            late = await engine.wait(await engine.submit(spec("0xbb", "e", "true")))
            wait = (late.fetch_started_at or submitted) - late.date_created
            done = [await engine.wait(job_id) for job_id in flood_ids]
        finally:
            await engine.close()
    completed = sum(1 for j in done if j.status == JobStatus.JOB_COMPLETED)
    one_job = statistics.median((j.date_finished or 0) - (j.fetch_started_at or 0) for j in done)
    ahead = sum(1 for j in done if (j.fetch_started_at or 0) < (late.fetch_started_at or 0))
    met = wait <= one_job and completed == jobs
    print(
        f"flood: {jobs} jobs of one consumer queued, then one of another's: it waited "
        f"{wait * 1000:.0f} ms against {one_job * 1000:.0f} ms for one job "
        f"({wait / one_job:.2f} x), started after {ahead} of the flood's; "
        f"{completed} of {jobs} of the flood completed: {verdict(met)}"
    )
    return met


# Per consumer: its environment (quarter or half a core) and its job's sleep.
LOADS = [
    ("quarter", 0.1),
    ("quarter", 0.2),
    ("quarter", 0.4),
    ("half", 0.1),
    ("half", 0.2),
    ("half", 0.4),
    ("quarter", 0.1),
    ("half", 0.4),
    ("quarter", 0.4),
    ("half", 0.1),
]


async def shares(window: float, per_consumer: int) -> bool:
    quarter = EnvironmentSettings(id="quarter", cpu=0.25, max_jobs=8, max_job_duration=60)
    half = EnvironmentSettings(id="half", cpu=0.5, max_jobs=4, max_job_duration=60)
    owners = [f"0x{i:040x}" for i in range(1, len(LOADS) + 1)]
    with tempfile.TemporaryDirectory() as folder:
        engine = Engine(settings(Path(folder), quarter, half), runtime=FakeRuntime())
        await engine.start()
        try:
            # Submitted in rounds, so that no consumer is ahead by the order of submits.
            # The run counts from the first: what fair turns even out is all the use
            # since, the submits' time included (the ledger started empty then).
            start = time.time()
            for _ in range(per_consumer):
                for owner, (env, sleep) in zip(owners, LOADS, strict=True):
                    await engine.submit(spec(owner, env, f"sleep {sleep}"))
            end = start + window
            while time.time() < end:
                await asyncio.sleep(0.5)
                waiting = {
                    j.owner
                    for j in await engine.find(JobQuery(unfinished=True))
                    if j.status == JobStatus.WARMING_UP
                }
                if len(waiting) < len(owners):  # one ran out: its share is no longer fair
                    end = time.time()
                    break
            jobs = await engine.find()
            await engine.stop_jobs([j.job_id for j in jobs if not j.is_final])
            for j in jobs:
                await engine.wait(j.job_id)
        finally:
            await engine.close()
    used = {owner: 0.0 for owner in owners}
    for j in jobs:
        used[j.owner] += held(j, start, end)
    total = sum(used.values())
    fair = total / len(owners)
    print(f"shares: {len(owners)} consumers over {end - start:.1f} s, {total:.1f} core-seconds")
    print("  consumer   load              core-s   share   off fair")
    worst = 0.0
    for owner, (env, sleep) in zip(owners, LOADS, strict=True):
        off = (used[owner] - fair) / fair
        worst = max(worst, abs(off))
        print(
            f"  ...{owner[-4:]}    {env:7s} {sleep:.1f} s   {used[owner]:7.2f}  "
            f"{used[owner] / total:6.1%}   {off:+6.1%}"
        )
    met = worst <= 0.10
    print(f"shares: the furthest from a fair share is {worst:.1%} off: {verdict(met)}")
    return met


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--case", choices=["flood", "shares"], action="append")
    parser.add_argument("--jobs", type=int, default=1000, help="the flood's jobs")
    parser.add_argument("--window", type=float, default=30, help="seconds of the shares run")
    parser.add_argument("--per-consumer", type=int, default=120, help="shares: jobs each")
    args = parser.parse_args()
    cases = args.case or ["flood", "shares"]
    met = True
    if "flood" in cases:
        met &= await flood(args.jobs)
    if "shares" in cases:
        met &= await shares(args.window, args.per_consumer)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
