"""What a long-running server keeps of finished jobs: nothing that grows with every job.

Measured with tracemalloc in this process: the served app over the FakeRuntime with
SQLite, its store filled with finished jobs as if they had run.
"""

from __future__ import annotations

import gc
import logging
import sqlite3
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from localcompute.core.jobspec import AlgorithmSpec, JobSpec
from localcompute.engine import Engine
from localcompute.store import JobStore
from localcompute.store.sqlite import FINISHED_CACHE_SIZE
from localcompute.testing import FakeRuntime
from tests.conftest import make_settings
from tests.served import CONSUMER, ENV, fake_server

# Growth a finished job may leave behind, once the bounded caches are full.
KIB_PER_JOB = 1.0
# Jobs a measured batch polls: more than the bounded caches hold (64), so that each batch
# replaces them all.
POLLED = 2 * FINISHED_CACHE_SIZE


async def finished_jobs(
    db: Path, count: int, *, environment: str = ENV, age: float = 1
) -> list[str]:
    """`count` jobs of CONSUMER stored as if they had run and ended `age` seconds ago."""
    store = JobStore(db)
    await store.open()
    algorithm = AlgorithmSpec(image="busybox", entrypoint="sh $ALGO", rawcode="echo hi")
    spec = JobSpec(environment=environment, owner=CONSUMER, algorithm=algorithm, api="provider")
    try:
        async with store.transaction() as tx:
            ids = [await tx.insert_job(spec, max_duration=60) for _ in range(count)]
    finally:
        await store.close()
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE jobs SET status = 70, termination_reason = 'completed', date_finished = ? "
            f"WHERE job_id IN ({', '.join('?' * len(ids))})",
            (time.time() - age, *ids),
        )
    conn.close()
    return ids


@contextmanager
def traced() -> Iterator[None]:
    """Allocations counted from here on. Set-up runs before, untraced: tracing slows every
    allocation several times over, and what set-up allocates is not what the server keeps.
    pytest keeps every log record a test makes (one access-log line a request): records are
    what the test holds, not what the server keeps, so none are made while traced."""
    logging.disable(logging.INFO)
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()
        logging.disable(logging.NOTSET)


def traced_now() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def test_status_polls_of_many_finished_jobs_keep_the_memory_flat(tmp_path: Path) -> None:
    async with fake_server(tmp_path) as served, aiohttp.ClientSession() as session:
        ids = await finished_jobs(tmp_path / "var" / "localcompute.sqlite", 3 * POLLED)

        async def poll(job_ids: list[str]) -> None:
            for job_id in job_ids:
                url = f"{served.base_url}/api/services/compute"
                params = {"consumerAddress": CONSUMER, "jobId": job_id}
                async with session.get(url, params=params) as response:
                    assert response.status == 200
                    [status] = await response.json()
                    assert status["status"] == 70

        await poll(ids[:POLLED])  # first uses: statement caches, imports, the pool of sockets
        with traced():
            # Every bounded cache is filled with entries allocated while traced, so that
            # what the measured polls evict is counted as freed.
            await poll(ids[POLLED : 2 * POLLED])
            before = traced_now()
            await poll(ids[2 * POLLED :])
            grown = (traced_now() - before) / 1024 / POLLED

    assert grown <= KIB_PER_JOB, f"{grown:.1f} KiB kept per finished job polled"


async def test_the_expiry_sweep_reads_only_the_jobs_due(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "var",
        environments=[
            {"id": ENV, "storage_expiry": 3600},
            {"id": "kept", "storage_expiry": 0},
        ],
    )
    db = settings.data_dir / "localcompute.sqlite"
    recent = await finished_jobs(db, 300)
    kept = await finished_jobs(db, 300, environment="kept", age=10**6)
    due = await finished_jobs(db, 2, age=7200)
    engine = Engine(settings, runtime=FakeRuntime())
    await engine.start()
    try:
        with traced():
            before = traced_now()
            tracemalloc.reset_peak()
            expired = await engine.expire_results()
            peak = (tracemalloc.get_traced_memory()[1] - before) / 1024
        assert sorted(expired) == sorted(due)
        assert not any(j.removed for j in [await engine.get(i) for i in recent + kept])
    finally:
        await engine.close()

    # Reading the 600 jobs that are not due would take megabytes, every minute.
    assert peak < 500, f"the sweep took {peak:.0f} KiB at its peak"
