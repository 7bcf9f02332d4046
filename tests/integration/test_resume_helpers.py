"""A helper container left by a crash is gone before its step cleans the job's folder.

A fetch or filter the dead server left may still be running and writing into the
folder the resumed step is about to empty; it must be removed first, not replaced
after the folder was prepared.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from localcompute.core.jobspec import AlgorithmSpec, JobSpec
from localcompute.core.models import Job
from localcompute.core.status import JobStatus, TerminationReason
from localcompute.engine.pipeline import Pipeline
from localcompute.engine.stepkit import ContainerDefaults
from localcompute.runtime import ContainerSpec, containers
from localcompute.runtime.containers import Stage
from localcompute.runtime.quota import WatchQuota
from localcompute.runtime.workspace import Workspace
from localcompute.store.memory import MemoryStore
from localcompute.testing import FakeRuntime
from tests.conftest import make_settings

DEFAULTS = ContainerDefaults(instance="crashed", user="1000:1000")


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


@pytest.fixture
async def parts() -> AsyncIterator[tuple[MemoryStore, FakeRuntime]]:
    """A store and a runtime, closed after the test."""
    store, runtime = MemoryStore(), FakeRuntime()
    await store.open()
    yield store, runtime
    await runtime.close()
    await store.close()


async def started_job(store: MemoryStore, rawcode: str) -> Job:
    spec = JobSpec(
        environment="test",
        algorithm=AlgorithmSpec(image="busybox", entrypoint="sh $ALGO", rawcode=rawcode),
    )
    async with store.transaction() as tx:
        job_id = await tx.insert_job(spec, max_duration=60)
    return await store.transition(job_id, JobStatus.JOB_STARTED)


async def leave_running(
    runtime: FakeRuntime, spec: ContainerSpec, stage: Stage, seconds: float = 60
) -> None:
    """What the dead server left: the step's container, still running (for a minute)."""
    runtime.slow_stages[stage] = seconds
    await runtime.create(spec)
    await runtime.start(spec.name)
    runtime.slow_stages.clear()


async def run_to_the_end(pipeline: Pipeline, job: Job) -> Job:
    try:
        done = await asyncio.wait_for(pipeline.run(job, asyncio.Event()), 30)
    finally:
        await pipeline.close()
    assert (done.status, done.termination_reason) == (
        JobStatus.JOB_COMPLETED,
        TerminationReason.COMPLETED,
    ), done.status_text
    return done


async def test_a_resumed_fetch_removes_the_fetch_left_running_before_it_cleans_the_folder(
    tmp_path: Path, parts: tuple[MemoryStore, FakeRuntime]
) -> None:
    store, runtime = parts
    disk = Watching(runtime)
    pipeline = Pipeline(store, runtime, make_settings(tmp_path / "var"), DEFAULTS, disk=disk)
    job = await started_job(store, "echo ok > $OUTPUTS/o.txt")
    job = await store.transition(job.job_id, JobStatus.CONFIGURING_VOLUMES)
    ctx = pipeline.context(job)
    await asyncio.to_thread(
        ctx.workspace.prepare,
        containers.fetch_document(ctx),
        lambda folder: disk.attach(folder, 10**8, job.job_id),
    )
    await leave_running(runtime, containers.fetch_container(ctx), Stage.FETCH)
    disk.running_at_attach.clear()

    await run_to_the_end(pipeline, job)

    assert disk.running_at_attach == [[]], "the folder was cleaned under a running fetch"


async def filtering_job(store: MemoryStore, pipeline: Pipeline) -> Job:
    """A job whose algorithm wrote o.txt and ended, its filter about to run."""
    job = await started_job(store, "true")
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
        await store.transition(job.job_id, status)
    return await store.transition(
        job.job_id,
        JobStatus.FILTERING_RESULTS,
        exit_code=0,
        termination_reason=TerminationReason.COMPLETED,
        algorithm_started_at=1.0,
        algorithm_finished_at=2.0,
    )


async def test_a_resumed_filter_awaits_the_filter_left_running_and_keeps_what_it_moved(
    tmp_path: Path, parts: tuple[MemoryStore, FakeRuntime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The filter moves the outputs: the one the dead server left carries on moving, so
    the resumed job waits for it rather than emptying results under it or running a
    second one on what it already moved."""
    store, runtime = parts
    pipeline = Pipeline(store, runtime, make_settings(tmp_path / "var"), DEFAULTS)
    job = await filtering_job(store, pipeline)
    ctx = pipeline.context(job)
    # Long enough for a resumed job that did not wait to act under it (it would at once).
    await leave_running(runtime, containers.filter_container(ctx), Stage.FILTER, seconds=0.3)
    running_at_reset: list[list[str]] = []
    reset = Workspace.reset_results

    def noting(ws: Workspace) -> None:
        running_at_reset.append([n for n, c in runtime.containers.items() if c.state == "running"])
        reset(ws)

    monkeypatch.setattr(Workspace, "reset_results", noting)

    done = await run_to_the_end(pipeline, job)

    assert "o.txt" in [r.filename for r in done.results]
    assert running_at_reset == [], "results were emptied, or a second filter run"
    assert runtime.created.count(containers.filter_container(ctx).name) == 1


async def test_a_filter_that_finished_before_the_restart_is_not_run_again(
    tmp_path: Path, parts: tuple[MemoryStore, FakeRuntime]
) -> None:
    """The server died after the filter wrote its manifest, its container already gone
    (before the 50 → 60 write): the moved outputs are the results."""
    store, runtime = parts
    pipeline = Pipeline(store, runtime, make_settings(tmp_path / "var"), DEFAULTS)
    job = await filtering_job(store, pipeline)
    ctx = pipeline.context(job)
    spec = containers.filter_container(ctx)
    await leave_running(runtime, spec, Stage.FILTER, seconds=0)
    assert (await runtime.wait(spec.name)).exit_code == 0
    await runtime.remove(spec.name)

    done = await run_to_the_end(pipeline, job)

    assert "o.txt" in [r.filename for r in done.results]
    assert runtime.created.count(spec.name) == 1


async def test_a_filter_cut_short_by_a_restart_withholds_the_outputs_it_had_begun_to_move(
    tmp_path: Path, parts: tuple[MemoryStore, FakeRuntime]
) -> None:
    """The filter moves the outputs out of the quota: what it left half moved cannot be
    filtered again, so the job fails saying why rather than publishing part of them."""
    store, runtime = parts
    pipeline = Pipeline(store, runtime, make_settings(tmp_path / "var"), DEFAULTS)
    job = await filtering_job(store, pipeline)
    ctx = pipeline.context(job)
    # It had begun moving when Docker itself restarted: its container is gone, and
    # there is no manifest.
    (ctx.workspace.results / "moved.txt").write_text("half")
    try:
        done = await asyncio.wait_for(pipeline.run(job, asyncio.Event()), 30)
    finally:
        await pipeline.close()
    assert done.termination_reason is TerminationReason.ERROR
    assert done.detail == (
        "Job failed: the output filter was cut short by a restart; outputs withheld"
    )
    assert [r.type for r in done.results if r.type == "output"] == []
    assert not any(ctx.workspace.results.iterdir())
