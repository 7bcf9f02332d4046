"""The job stores: compare-and-set, admission, preconditions; SQLite on a real file.

The shared tests run on SQLite and on the in-memory store, so the fake keeps the
same promises as the real one.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from localcompute.core.errors import (
    AgreementInUseError,
    NonceError,
    StoreError,
    TransitionRefusedError,
)
from localcompute.core.jobspec import AlgorithmSpec, JobSpec
from localcompute.core.models import JobQuery, Preconditions
from localcompute.core.settings import EnvironmentSettings
from localcompute.core.status import JobStatus, StopRequest, TerminationReason
from localcompute.engine.amounts import GIB, Capacity
from localcompute.engine.pool import Pool
from localcompute.store import MIGRATIONS, JobStore, Store
from localcompute.store.memory import MemoryStore


def pool(max_jobs: int = 2, cores: int = 8) -> Pool:
    """A pool of `cores` cores where each environment runs `max_jobs` one-core jobs."""
    envs = {e: EnvironmentSettings(id=e, max_jobs=max_jobs) for e in ("env", "other")}
    return Pool(Capacity(tuple(range(cores)), 64 * GIB, 64 * GIB, ()), envs.get)


def spec(environment: str = "env") -> JobSpec:
    return JobSpec(
        environment=environment,
        owner="0xAbC",
        algorithm=AlgorithmSpec(image="busybox", entrypoint="sh $ALGO", rawcode="echo hello!"),
    )


async def insert(store: Store, job: JobSpec, *, max_duration: float = 60) -> str:
    async with store.transaction() as tx:
        return await tx.insert_job(job, max_duration=max_duration)


@pytest.fixture(params=["sqlite", "memory"])
async def store(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """Both stores keep the same promises: every test here runs on each."""
    s: Store = JobStore(tmp_path / "jobs.sqlite") if request.param == "sqlite" else MemoryStore()
    await s.open()
    yield s
    await s.close()


async def test_a_new_job_waits_with_oceans_first_status(store: Store) -> None:
    job = await store.get(await insert(store, spec()))
    assert (job.status, job.status_text) == (JobStatus.WARMING_UP, "Warming up")
    assert job.date_finished is None and job.results == [] and len(job.job_id) == 32
    assert job.spec == spec()


async def test_transitions_are_compare_and_set(store: Store) -> None:
    job_id = await insert(store, spec())
    with pytest.raises(TransitionRefusedError):
        await store.transition(job_id, JobStatus.RUNNING_ALGORITHM)
    assert (await store.get(job_id)).status == JobStatus.WARMING_UP
    [admitted] = await store.admit(pool(max_jobs=1))
    assert admitted.status == JobStatus.JOB_STARTED and admitted.allocation is not None
    # Two actors race to move the same job: exactly one wins.
    outcomes = await asyncio.gather(
        store.transition(job_id, JobStatus.CONFIGURING_VOLUMES),
        store.transition(job_id, JobStatus.CONFIGURING_VOLUMES),
        return_exceptions=True,
    )
    assert sum(isinstance(o, TransitionRefusedError) for o in outcomes) == 1


async def test_a_finished_job_never_changes(store: Store) -> None:
    job_id = await insert(store, spec())
    done = await store.transition(
        job_id,
        JobStatus.JOB_COMPLETED,
        termination_reason=TerminationReason.STOPPED,
        date_finished=1.0,
    )
    assert done.termination_reason == TerminationReason.STOPPED
    for target in JobStatus:
        with pytest.raises(TransitionRefusedError):
            await store.transition(job_id, target)
    assert await store.request_stop(job_id, StopRequest.STOP) is None
    assert (await store.get(job_id)).status_text == "Job stopped"


async def test_transition_refuses_unknown_columns(store: Store) -> None:
    job_id = await insert(store, spec())
    with pytest.raises(StoreError):
        await store.transition(job_id, JobStatus.JOB_STARTED, owner="someone else")


async def test_admission_never_exceeds_max_jobs_or_the_pool_and_is_fifo(store: Store) -> None:
    ids = [await insert(store, spec()) for _ in range(6)]
    other = await insert(store, spec("other"))
    # Concurrent admissions: each reads what the others took, in its own transaction.
    rounds = await asyncio.gather(*(store.admit(pool(cores=3)) for _ in range(6)))
    got = [j.job_id for r in rounds for j in r]
    assert got == [*ids[:2], other]
    assert await store.slots_in_use() == {"env": 2, "other": 1}
    cores = [c for r in rounds for j in r for c in (j.allocation.cpuset if j.allocation else [])]
    assert sorted(cores) == [0, 1, 2]  # pinned, disjoint
    # A job that ends frees its slot and its core for the next in line.
    await store.transition(ids[0], JobStatus.JOB_COMPLETED, date_finished=1.0)
    [nxt] = await store.admit(pool(cores=3))
    assert nxt.job_id == ids[2]
    first = next(j for r in rounds for j in r if j.job_id == ids[0])
    assert first.allocation is not None and nxt.allocation is not None
    assert nxt.allocation.cpuset == first.allocation.cpuset


async def test_the_pool_after_a_restart_is_what_the_store_holds(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    first = JobStore(path)
    await first.open()
    ids = [await insert(first, spec()) for _ in range(3)]
    admitted = await first.admit(pool(max_jobs=3, cores=2))
    await first.close()
    assert [j.job_id for j in admitted] == ids[:2]
    again = JobStore(path)
    await again.open()
    try:
        # Nothing freed: nothing more admitted, and no core counted twice or forgotten.
        assert await again.admit(pool(max_jobs=3, cores=2)) == []
        active = await again.active_jobs()
        assert [j.allocation for j in active] == [j.allocation for j in admitted]
        assert pool(cores=2).in_use(j.claim for j in active)["cpu"] == 2
    finally:
        await again.close()


async def test_stop_request_is_recorded_once(store: Store) -> None:
    job_id = await insert(store, spec())
    first = await store.request_stop(job_id, StopRequest.STOP)
    assert first is not None and first.stopreq == StopRequest.STOP
    # A time limit after a stop keeps the stop.
    assert await store.request_stop(job_id, StopRequest.TIME_LIMIT) is None
    assert (await store.get(job_id)).stopreq == StopRequest.STOP


async def test_find_filters_and_owner_case(store: Store) -> None:
    a = await insert(store, spec())
    await insert(store, spec().model_copy(update={"owner": "0xdef"}))
    assert [j.job_id for j in await store.find(JobQuery(owner="0xABC"))] == [a]
    assert [j.job_id for j in await store.find(JobQuery(job_id=a, owner="0xdef"))] == []
    assert len(await store.find(JobQuery(unfinished=True))) == 2


async def test_store_survives_reopen_and_keeps_its_instance(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    first = JobStore(path)
    await first.open()
    job_id = await insert(first, spec())
    instance = await first.instance_id()
    await first.close()
    second = JobStore(path)
    await second.open()
    assert await second.instance_id() == instance
    assert (await second.get(job_id)).job_id == job_id
    await second.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    store = JobStore(path)
    with pytest.raises(StoreError, match="schema version"):
        await store.open()
    await store.close()


async def test_a_failed_precondition_stores_nothing(store: Store) -> None:
    signed = Preconditions.signed("0xAbC", Decimal(5))
    async with store.transaction() as tx:
        await tx.check(signed)
        await tx.insert_job(spec(), max_duration=60)
    # The same nonce again: refused, and the insert beside it is rolled back.
    with pytest.raises(NonceError):
        async with store.transaction() as tx:
            await tx.insert_job(spec(), max_duration=60)
            await tx.check(Preconditions.signed("0xabc", Decimal(5)))
    assert len(await store.find(JobQuery())) == 1
    assert await store.get_nonce("0xABC") == Decimal(5)


async def test_an_agreement_is_held_until_its_job_ends(store: Store) -> None:
    held = spec().model_copy(update={"agreement_id": "agr-1"})
    job_id = await insert(store, held)
    with pytest.raises(AgreementInUseError):
        async with store.transaction() as tx:
            await tx.check(Preconditions(unused_agreement="agr-1"))
            await tx.insert_job(held, max_duration=60)
    await store.transition(job_id, JobStatus.JOB_COMPLETED, date_finished=1.0)
    async with store.transaction() as tx:
        await tx.check(Preconditions(unused_agreement="agr-1"))
    assert len(await store.find(JobQuery(agreement_id="agr-1"))) == 1


async def test_driver_errors_become_store_errors(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    store = JobStore(path)
    await store.open()
    try:
        with sqlite3.connect(path) as db:
            db.execute("DROP TABLE nonces")
        with pytest.raises(StoreError, match="the job store failed"):
            await store.get_nonce("0xabc")
    finally:
        await store.close()


def test_a_version_2_file_migrates_keeping_its_jobs(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    spec_json = spec().model_dump_json()
    with sqlite3.connect(path) as db:
        for number, script in enumerate(MIGRATIONS[:2], start=1):
            for statement in filter(str.strip, script.split(";")):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")
        db.execute(
            "INSERT INTO jobs (job_id, environment, owner, agreement_id, status, status_text,"
            " date_created, deadline, max_duration, secret, spec, termination_reason, detail,"
            " algorithm_started_at, date_finished)"
            " VALUES ('j1', 'env', '0xAbC', 'a', 70, 'whatever was stored', 1.0, 99.0, 60,"
            " 's', ?, 'error', 'Job failed: the output filter timed out', 10.0, 80.0)",
            (spec_json,),
        )

    async def read() -> None:
        store = JobStore(path)
        await store.open()
        try:
            job = await store.get("j1")
        finally:
            await store.close()
        assert (job.owner, job.termination_reason, job.date_finished) == (
            "0xAbC",
            TerminationReason.ERROR,
            80.0,
        )
        # Derived now: the detail is the statusText of a failed job; the deadline is
        # the algorithm's start plus max_duration.
        assert job.status_text == "Job failed: the output filter timed out"
        assert job.deadline == 70.0

    asyncio.run(read())
    with sqlite3.connect(path) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    assert "status_text" not in columns and "deadline" not in columns
