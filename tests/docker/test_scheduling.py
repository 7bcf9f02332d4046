"""Time limits, stops and per-environment concurrency on the real Docker engine."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest

from localcompute import JobStatus, StopRequest, TerminationReason
from tests.docker.conftest import EngineFactory, raw_job, result_text, wait_final, wait_status

pytestmark = pytest.mark.docker


async def test_time_limit_kills_the_algorithm_and_keeps_its_results(
    engine_factory: EngineFactory,
) -> None:
    engine = await engine_factory(environments=[{"id": "test", "max_job_duration": 2}])
    job_id = await engine.submit(raw_job("echo started > $OUTPUTS/started.txt; sleep 60"))
    job = await wait_final(engine, job_id, timeout=30)
    assert job.status == JobStatus.JOB_COMPLETED
    assert job.stopreq == StopRequest.TIME_LIMIT
    assert job.termination_reason == TerminationReason.TIMEOUT
    assert job.status_text == "Job timed out"
    assert job.deadline is not None and job.algorithm_started_at is not None
    assert job.deadline - job.algorithm_started_at == pytest.approx(2, abs=0.01)
    assert job.date_finished is not None
    assert job.date_finished - job.deadline < 3, "the job ended too long after its deadline"
    assert "started.txt" in [r.filename for r in job.results]


async def test_stop_while_running_kills_and_publishes(engine_factory: EngineFactory) -> None:
    engine = await engine_factory()
    job_id = await engine.submit(raw_job("echo hi > $OUTPUTS/hi.txt; sleep 60"))
    await wait_status(engine, job_id, JobStatus.RUNNING_ALGORITHM)
    await asyncio.sleep(0.5)
    stopped = await engine.stop(job_id)
    assert stopped.stopreq == StopRequest.STOP
    job = await wait_final(engine, job_id, timeout=20)
    assert job.status == JobStatus.JOB_COMPLETED
    assert (job.stopreq, job.termination_reason) == (StopRequest.STOP, TerminationReason.STOPPED)
    assert job.status_text == "Job stopped"
    assert "hi.txt" in [r.filename for r in job.results]


async def test_stop_while_waiting_ends_without_running(engine_factory: EngineFactory) -> None:
    engine = await engine_factory(environments=[{"id": "test", "max_jobs": 1}])
    first = await engine.submit(raw_job("sleep 60 # holds the only slot"))
    second = await engine.submit(raw_job("echo should never run"))
    assert (await engine.get(second)).status == JobStatus.WARMING_UP
    try:
        job = await engine.stop(second)
        assert job.status == JobStatus.JOB_COMPLETED
        assert job.termination_reason == TerminationReason.STOPPED
        assert job.algorithm_started_at is None and job.fetch_started_at is None
        # Nothing ran, so nothing of its own is published: its logs say why, and its
        # receipt says so, signed.
        assert [r.filename for r in job.results] == ["configure.log", "publish.log", "receipt.json"]
        assert "stopped before it started" in result_text(engine, job, "configure.log")
    finally:
        await engine.stop(first)
        await wait_final(engine, first, timeout=20)


async def test_max_jobs_one_runs_jobs_one_at_a_time_in_order(
    engine_factory: EngineFactory,
) -> None:
    engine = await engine_factory(environments=[{"id": "test", "max_jobs": 1}])
    job_ids = [
        await engine.submit(raw_job(f"sleep 1; echo job {n} > $OUTPUTS/n.txt")) for n in range(3)
    ]
    most_at_once = 0
    while True:
        running = subprocess.run(
            [
                "docker",
                "ps",
                "-q",
                "--filter",
                f"label=localcompute.instance={engine.instance}",
                "--filter",
                "label=localcompute.stage=algorithm",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        most_at_once = max(most_at_once, len(running))
        jobs = [await engine.get(j) for j in job_ids]
        if all(j.is_final for j in jobs):
            break
        await asyncio.sleep(0.1)
    assert most_at_once == 1
    assert [j.status for j in jobs] == [JobStatus.JOB_COMPLETED] * 3
    starts = [j.algorithm_started_at for j in jobs]
    ends = [j.algorithm_finished_at for j in jobs]
    assert all(s is not None for s in starts) and all(e is not None for e in ends)
    assert starts == sorted(starts)  # type: ignore[type-var]
    for previous_end, next_start in zip(ends, starts[1:], strict=False):
        assert next_start >= previous_end  # type: ignore[operator]


async def test_delete_removes_containers_folder_and_results(
    engine_factory: EngineFactory,
) -> None:
    engine = await engine_factory()
    job_id = await engine.submit(raw_job("echo x > $OUTPUTS/x.txt; sleep 60"))
    await wait_status(engine, job_id, JobStatus.RUNNING_ALGORITHM)
    # The delete is recorded and answered at once: it never waits on the job.
    answered = await engine.delete(job_id)
    assert answered.delete_requested and answered.stopreq == StopRequest.STOP
    assert not answered.is_final and not answered.removed
    # The job's own task ends it and removes what it leaves behind.
    job = await wait_final(engine, job_id)
    deadline = time.monotonic() + 30
    while not job.removed and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        job = await engine.get(job_id)
    assert job.removed and job.results == []
    assert job.termination_reason == TerminationReason.STOPPED
    assert not (engine.settings.data_dir / "jobs" / job_id).exists()
    left = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=localcompute.job_id={job_id}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert left == []
    assert (await engine.get(job_id)).removed


async def test_results_expire_after_storage_expiry(engine_factory: EngineFactory) -> None:
    engine = await engine_factory(environments=[{"id": "test", "storage_expiry": 30}])
    job = await wait_final(engine, await engine.submit(raw_job("echo x > $OUTPUTS/x.txt")))
    assert job.results and job.date_finished is not None
    assert await engine.expire_results(now=job.date_finished + 29) == []
    assert (await engine.get(job.job_id)).results
    assert await engine.expire_results(now=job.date_finished + 30) == [job.job_id]
    expired = await engine.get(job.job_id)
    assert expired.removed and expired.results == []
    assert not (engine.settings.data_dir / "jobs" / job.job_id).exists()


async def test_a_delete_recorded_before_a_crash_is_carried_out_at_the_next_start(
    engine_factory: EngineFactory,
) -> None:
    first = await engine_factory()
    job = await wait_final(first, await first.submit(raw_job("echo x > $OUTPUTS/x.txt")))
    assert job.results
    # The server died between recording the delete and removing the files.
    async with first.store.transaction() as tx:
        await tx.request_delete(job.job_id)
    await first.close()

    second = await engine_factory()
    after = await second.get(job.job_id)
    assert after.removed and after.results == []
    assert not (second.settings.data_dir / "jobs" / job.job_id).exists()
