"""The runner's moves, over the in-memory store (no processes, no disk): what a step's table
entry makes of a job's status and phase times, and what it leaves to the step."""

from __future__ import annotations

from localcompute.core.status import JobStatus, TerminationReason
from localcompute.engine.steps import STEPS, Done, Moves, stage_at
from localcompute.runtime.containers import Stage
from localcompute.store.memory import MemoryStore
from tests.factories import a_spec


async def inserted(store: MemoryStore) -> str:
    async with store.transaction() as tx:
        return await tx.insert_job(a_spec(), max_duration=60)


async def test_each_step_enters_and_leaves_as_the_table_says() -> None:
    store = MemoryStore()
    await store.open()
    job_id = await inserted(store)
    await store.transition(job_id, JobStatus.JOB_STARTED)
    fetch, algorithm, filter_ = STEPS

    moves = Moves(store, fetch, await store.get(job_id))
    assert not moves.resumed
    job = await moves.enter()
    assert job.status == JobStatus.CONFIGURING_VOLUMES and job.fetch_started_at is not None
    assert (await moves.enter()).status == JobStatus.CONFIGURING_VOLUMES  # once
    job = await moves.leave(Done())
    assert job.status == JobStatus.PROVISIONING_SUCCESS and job.fetch_finished_at is not None

    # The algorithm enters its 40 itself; what it learnt is written with its 50.
    moves = Moves(store, algorithm, job)
    assert algorithm.enters_itself and not moves.resumed
    job = await moves.enter()
    assert job.status == JobStatus.RUNNING_ALGORITHM and job.algorithm_started_at is not None
    facts = {"exit_code": 3, "termination_reason": TerminationReason.FAILED, "detail": ""}
    job = await moves.leave(Done(facts))
    assert (job.status, job.exit_code, job.termination_reason) == (
        JobStatus.FILTERING_RESULTS,
        3,
        TerminationReason.FAILED,
    )
    assert job.filter_started_at is not None

    moves = Moves(store, filter_, job)
    job = await moves.enter()  # the filter works in the 50 it was left at
    assert job.status == JobStatus.FILTERING_RESULTS
    job = await moves.leave(Done({"detail": "Job failed: the output filter timed out"}))
    assert job.status == JobStatus.PUBLISHING_RESULTS
    assert job.filter_finished_at is not None and job.publish_started_at is not None
    assert job.detail.startswith("Job failed")


async def test_a_job_already_in_a_steps_status_resumes_it() -> None:
    store = MemoryStore()
    await store.open()
    job_id = await inserted(store)
    for status in (JobStatus.JOB_STARTED, JobStatus.CONFIGURING_VOLUMES):
        await store.transition(job_id, status)
    moves = Moves(store, STEPS[0], await store.get(job_id))
    assert moves.resumed
    assert (await moves.enter()).fetch_started_at is None  # not entered twice


def test_the_table_names_the_one_container_a_status_may_have() -> None:
    assert stage_at(JobStatus.CONFIGURING_VOLUMES) is Stage.FETCH
    assert stage_at(JobStatus.RUNNING_ALGORITHM) is Stage.ALGORITHM
    assert stage_at(JobStatus.FILTERING_RESULTS) is Stage.FILTER
    assert stage_at(JobStatus.PUBLISHING_RESULTS) is None
