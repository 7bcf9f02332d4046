"""A helper container left by a crash is gone before its step cleans the job's folder.

A fetch or filter the dead server left may still be running and writing into the
folder the resumed step is about to empty; it must be removed first, not replaced
after the folder was prepared.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from localcompute.core.models import AlgorithmSpec, JobSpec
from localcompute.core.status import JobStatus, TerminationReason
from localcompute.engine.pipeline import ContainerDefaults, Pipeline
from localcompute.runtime import containers
from localcompute.runtime.containers import Stage
from localcompute.runtime.disk import WatchQuota
from localcompute.runtime.workspace import Workspace
from localcompute.store.memory import MemoryStore
from localcompute.testing import FakeRuntime
from tests.conftest import make_settings

DEFAULTS = ContainerDefaults(
    instance="crashed", user="1000:1000", fetch_network="host", algorithm_network="host"
)


class Watching(WatchQuota):
    """A soft quota that notes, each time a data folder is made, which containers run."""

    def __init__(self, runtime: FakeRuntime) -> None:
        self.runtime = runtime
        self.running_at_attach: list[list[str]] = []

    def attach(self, folder: Path, limit: int, key: str) -> None:
        self.running_at_attach.append(
            [n for n, c in self.runtime.containers.items() if c.state == "running"]
        )
        super().attach(folder, limit, key)


async def test_a_resumed_fetch_removes_the_fetch_left_running_before_it_cleans_the_folder(
    tmp_path: Path,
) -> None:
    store, runtime = MemoryStore(), FakeRuntime()
    await store.open()
    disk = Watching(runtime)
    pipeline = Pipeline(store, runtime, make_settings(tmp_path / "var"), DEFAULTS, disk=disk)
    spec = JobSpec(
        environment="test",
        algorithm=AlgorithmSpec(
            image="busybox", entrypoint="sh $ALGO", rawcode="echo ok > $OUTPUTS/o.txt"
        ),
    )
    async with store.transaction() as tx:
        job_id = await tx.insert_job(spec, max_duration=60)
    await store.transition(job_id, JobStatus.JOB_STARTED)
    job = await store.transition(job_id, JobStatus.CONFIGURING_VOLUMES)
    # What the dead server left: its fetch, still running.
    ctx = pipeline.context(job)
    await asyncio.to_thread(
        ctx.workspace.prepare,
        containers.fetch_document(ctx),
        lambda folder: disk.attach(folder, 10**8, job_id),
    )
    left = containers.fetch_container(ctx)
    runtime.slow_stages[Stage.FETCH] = 60
    await runtime.create(left)
    await runtime.start(left.name)
    runtime.slow_stages.clear()
    disk.running_at_attach.clear()
    try:
        done = await asyncio.wait_for(pipeline.run(job, asyncio.Event()), 30)

        assert (done.status, done.termination_reason) == (
            JobStatus.JOB_COMPLETED,
            TerminationReason.COMPLETED,
        ), done.status_text
        assert disk.running_at_attach == [[]], "the folder was cleaned under a running fetch"
    finally:
        await pipeline.close()
        await runtime.close()
        await store.close()


async def test_a_resumed_filter_removes_the_filter_left_running_before_it_empties_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, runtime = MemoryStore(), FakeRuntime()
    await store.open()
    pipeline = Pipeline(store, runtime, make_settings(tmp_path / "var"), DEFAULTS)
    spec = JobSpec(
        environment="test",
        algorithm=AlgorithmSpec(image="busybox", entrypoint="sh $ALGO", rawcode="true"),
    )
    async with store.transaction() as tx:
        job_id = await tx.insert_job(spec, max_duration=60)
    job = await store.transition(job_id, JobStatus.JOB_STARTED)
    ctx = pipeline.context(job)
    await asyncio.to_thread(
        ctx.workspace.prepare,
        containers.fetch_document(ctx),
        lambda folder: folder.mkdir(parents=True),
    )
    (ctx.workspace.outputs / "o.txt").write_text("ok\n")
    for status in (
        JobStatus.CONFIGURING_VOLUMES,
        JobStatus.PROVISIONING_SUCCESS,
        JobStatus.RUNNING_ALGORITHM,
    ):
        await store.transition(job_id, status)
    job = await store.transition(
        job_id,
        JobStatus.FILTERING_RESULTS,
        exit_code=0,
        termination_reason=TerminationReason.COMPLETED,
        algorithm_started_at=1.0,
        algorithm_finished_at=2.0,
    )
    # What the dead server left: its filter, still running.
    left = containers.filter_container(ctx)
    runtime.slow_stages[Stage.FILTER] = 60
    await runtime.create(left)
    await runtime.start(left.name)
    runtime.slow_stages.clear()
    running_at_reset: list[list[str]] = []
    reset = Workspace.reset_results

    def noting(ws: Workspace) -> None:
        running_at_reset.append([n for n, c in runtime.containers.items() if c.state == "running"])
        reset(ws)

    monkeypatch.setattr(Workspace, "reset_results", noting)
    try:
        done = await asyncio.wait_for(pipeline.run(job, asyncio.Event()), 30)

        assert (done.status, done.termination_reason) == (
            JobStatus.JOB_COMPLETED,
            TerminationReason.COMPLETED,
        ), done.status_text
        assert "o.txt" in [r.filename for r in done.results]
        assert running_at_reset == [[]], "results were emptied under a running filter"
    finally:
        await pipeline.close()
        await runtime.close()
        await store.close()
