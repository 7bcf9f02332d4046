"""What one admission costs as the queue grows: every submit and every job's end runs one.

An admission is one SQLite transaction that reads what the running jobs hold and the
waiting jobs' claims, and asks the pool whom to admit. Its floor is the same
transaction with nobody waiting. Two cases, on a pool of 2 cores with one-core jobs:
every slot taken (max_jobs 2: the queue is not even read), and slots free but the
pool full (max_jobs 10: the waiting claims are read and fitted). Each admission offers the
jobs in fair turns between consumers, as the engine does; the jobs belong to 10 consumers.

    .venv/bin/python bench/admission.py
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from localcompute.core.jobspec import AlgorithmSpec, JobSpec
from localcompute.core.settings import EnvironmentSettings
from localcompute.engine.amounts import GIB, Capacity
from localcompute.engine.pool import Pool
from localcompute.engine.turns import FairTurns, UseLedger
from localcompute.store import JobStore

ROUNDS = 30


async def timed(store: JobStore, pool: Pool) -> float:
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        await store.admit(pool)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def case(max_jobs: int) -> None:
    env = EnvironmentSettings(id="e", cpu=1, max_jobs=max_jobs)
    turns = FairTurns(UseLedger(3600), weight=lambda owner: 1.0)
    pool = Pool(Capacity((0, 1), 8 * GIB, 100 * GIB, ()), {"e": env}.get, turns)
    specs = [
        JobSpec(
            environment="e",
            owner=f"0x{i:040x}",
            algorithm=AlgorithmSpec(image="i", entrypoint="sh $ALGO", rawcode="x"),
        )
        for i in range(10)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        store = JobStore(Path(tmp) / "jobs.sqlite")
        await store.open()
        try:
            floor = await timed(store, pool)
            waiting = 0
            print(f"max_jobs {max_jobs}: empty queue (the floor) {floor * 1000:.2f} ms")
            for target in (2, 10, 100, 1000):
                async with store.transaction() as tx:
                    for n in range(target + 2 - waiting):  # the first two are admitted
                        await tx.insert_job(specs[n % len(specs)], max_duration=60)
                waiting = target
                await store.admit(pool)
                cost = await timed(store, pool)
                print(
                    f"  {waiting:5d} waiting: {cost * 1000:6.2f} ms per admission, "
                    f"{cost / floor:5.1f} x the floor"
                )
        finally:
            await store.close()


async def main() -> None:
    await case(max_jobs=2)
    await case(max_jobs=10)


if __name__ == "__main__":
    asyncio.run(main())
