"""The final write of a job survives the cancellation of the job's task."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

import pytest

from localcompute.core.jobspec import AlgorithmSpec, JobSpec
from localcompute.core.status import JobStatus, TerminationReason
from localcompute.engine.pipeline import Pipeline
from localcompute.engine.stepkit import ContainerDefaults
from localcompute.runtime import ContainerRuntime
from localcompute.store import JobStore
from tests.conftest import make_settings


async def test_cancelling_a_job_during_its_final_write_waits_for_the_write(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.sqlite"
    store = JobStore(path)
    await store.open()
    spec = JobSpec(
        environment="test",
        algorithm=AlgorithmSpec(image="busybox", entrypoint="sh $ALGO", rawcode="true"),
    )
    async with store.transaction() as tx:
        job_id = await tx.insert_job(spec, max_duration=60)
    # The final write needs no Docker: the runtime is never called.
    pipeline = Pipeline(
        store,
        cast(ContainerRuntime, None),
        make_settings(tmp_path / "var"),
        ContainerDefaults(instance="i", user="1000:1000"),
    )
    task = asyncio.create_task(pipeline.finish_waiting(await store.get(job_id)))
    await asyncio.sleep(0)  # the write has begun

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # What Engine.close does next: the store closes under whatever is still running.
    await store.close()

    reopened = JobStore(path)
    await reopened.open()
    try:
        job = await reopened.get(job_id)
        assert (job.status, job.termination_reason) == (
            JobStatus.JOB_COMPLETED,
            TerminationReason.STOPPED,
        )
    finally:
        await reopened.close()
