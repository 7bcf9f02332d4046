"""The final write of a job survives the cancellation of the job's task.

The store's write is held at a gate until the cancel has landed: without the shield in
Pipeline._finish the cancel would reach the write itself, which would never be made
(the test would fail); with it, the cancelled task waits for the write to end."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest

from localcompute.core.jobspec import AlgorithmSpec, JobSpec
from localcompute.core.status import JobStatus, TerminationReason
from localcompute.engine.pipeline import Pipeline
from localcompute.engine.stepkit import ContainerDefaults
from localcompute.runtime import ContainerRuntime
from localcompute.store import JobStore, Store
from tests.conftest import make_settings


class GatedWrites:
    """The store, with each status write held until the gate opens."""

    def __init__(self, inner: JobStore) -> None:
        self.inner = inner
        self.writing = asyncio.Event()
        self.gate = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def transition(self, job_id: str, to: JobStatus, **fields: Any) -> Any:
        self.writing.set()
        await self.gate.wait()
        return await self.inner.transition(job_id, to, **fields)


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
    gated = GatedWrites(store)
    pipeline = Pipeline(
        cast(Store, gated),
        cast(ContainerRuntime, None),
        make_settings(tmp_path / "var"),
        ContainerDefaults(instance="i", user="1000:1000"),
    )
    task = asyncio.create_task(pipeline.finish_waiting(await store.get(job_id)))
    try:
        await gated.writing.wait()  # the final write has begun, and is held
        task.cancel()
        await asyncio.sleep(0.05)
        waited = not task.done()
        gated.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        # What Engine.close does next: the store closes under whatever is still running.
        await store.close()
    assert waited, "the cancelled task must wait for its final write"

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
