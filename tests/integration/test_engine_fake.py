"""The engine over the FakeRuntime and the in-memory store: its rules, without Docker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from localcompute import AlgorithmSpec, Engine, JobSpec, JobStatus, StopRequest, TerminationReason
from localcompute.core.errors import DockerUnavailableError, RefusedError
from localcompute.core.jobspec import FileSource, InputSpec
from localcompute.core.models import Job
from localcompute.core.settings import DatasetSettings, Settings
from localcompute.engine import scheduler
from localcompute.runtime import ContainerState
from localcompute.runtime.containers import Stage, container_name
from localcompute.runtime.workspace import Workspace
from localcompute.store.memory import MemoryStore
from localcompute.testing import FakeRuntime
from tests.conftest import make_settings
from tests.gates import Gates


def shell(script: str) -> JobSpec:
    return JobSpec(
        environment="test",
        owner="0xa",
        algorithm=AlgorithmSpec(image="busybox", entrypoint="sh $ALGO", rawcode=script),
    )


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    engine = Engine(make_settings(tmp_path / "var"), runtime=FakeRuntime(), store=MemoryStore())
    await engine.start()
    yield engine
    await engine.close()


async def until(engine: Engine, job_id: str, done: str, check: object) -> Job:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        job = await engine.get(job_id)
        if callable(check) and check(job):
            return job
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} never got {done}: {job!r}")


async def slot_waiters(engine: Engine, job_id: str, count: int) -> None:
    """Until `count` callers wait on the queued job's slot: the state the test needs, not a
    guess at how long it takes to reach it."""
    deadline = time.monotonic() + 20
    while len(engine.scheduler._slot_waiters.get(job_id, [])) < count:
        assert time.monotonic() < deadline, f"{count} waiters never registered on {job_id}"
        await asyncio.sleep(0)


async def test_a_job_runs_through_every_step(engine: Engine) -> None:
    job = await engine.wait(await engine.submit(shell("echo hi; echo out > $OUTPUTS/o.txt")))

    assert (job.status, job.termination_reason) == (
        JobStatus.JOB_COMPLETED,
        TerminationReason.COMPLETED,
    )
    assert [r.filename for r in job.results][:2] == ["o.txt", "algorithm.log"]
    assert engine.result_path(job, 1).read_text() == "hi\n"


async def test_delete_of_a_running_job_answers_at_once_and_the_job_cleans_up(
    engine: Engine,
) -> None:
    job_id = await engine.submit(shell("sleep 60"))
    await until(engine, job_id, "40", lambda j: j.status == JobStatus.RUNNING_ALGORITHM)

    answered = await engine.delete(job_id)

    assert answered.delete_requested and answered.stopreq == StopRequest.STOP
    assert not answered.is_final, "the delete did not wait for the job"
    done = await until(engine, job_id, "removed", lambda j: j.removed)
    assert done.termination_reason == TerminationReason.STOPPED and done.results == []
    assert not (engine.settings.data_dir / "jobs" / job_id).exists()


async def test_a_stop_that_arrives_while_the_filter_runs_ends_the_filter(
    engine: Engine,
) -> None:
    runtime = engine.runtime
    assert isinstance(runtime, FakeRuntime)
    runtime.slow_stages["filter"] = 60  # a filter still busy when the stop comes
    job_id = await engine.submit(shell("echo out > $OUTPUTS/o.txt"))
    filter_name = container_name(engine.instance, job_id, Stage.FILTER)

    # Started, not just there: the filter is created ahead, while the algorithm runs, and
    # a stop then is one the algorithm obeys (and its filter is not cut).
    def filtering(_: Job) -> bool:
        container = runtime.containers.get(filter_name)
        return container is not None and container.state == "running"

    await until(engine, job_id, "its filter started", filtering)

    await engine.stop(job_id)
    job = await engine.wait(job_id)

    assert (job.status, job.termination_reason) == (
        JobStatus.JOB_COMPLETED,
        TerminationReason.STOPPED,
    )
    # Without a complete filter run no output leaves: the logs are the results.
    assert "o.txt" not in [r.filename for r in job.results]
    assert "algorithm.log" in [r.filename for r in job.results]


async def test_a_stop_before_the_filter_still_filters_the_partial_outputs(
    engine: Engine,
) -> None:
    job_id = await engine.submit(shell("echo part > $OUTPUTS/p.txt; sleep 60"))
    written = Workspace.of(engine.settings.data_dir, job_id).outputs / "p.txt"
    await until(engine, job_id, "its partial output", lambda _: written.exists())

    await engine.stop(job_id)
    job = await engine.wait(job_id)

    assert job.termination_reason == TerminationReason.STOPPED
    assert "p.txt" in [r.filename for r in job.results]


def one_slot_settings(tmp_path: Path) -> Settings:
    # Jobs left running at close keep their disk for the next start: a watched quota
    # has no mount to leave behind.
    return make_settings(
        tmp_path / "var",
        environments=[{"id": "test", "max_jobs": 1, "max_job_duration": 120}],
        pool={"disk_quota": "watch"},
    )


@pytest.fixture
async def one_slot(tmp_path: Path) -> AsyncIterator[Engine]:
    settings = one_slot_settings(tmp_path)
    engine = Engine(settings, runtime=FakeRuntime(), store=MemoryStore())
    await engine.start()
    yield engine
    await engine.close()


async def test_waiting_on_a_queued_job_returns_it_finished_once_its_turn_came(
    one_slot: Engine, gates: Gates
) -> None:
    gate = gates()
    first = await one_slot.submit(shell(gate.wait))
    queued = await one_slot.submit(shell("echo second > $OUTPUTS/o.txt"))
    assert (await one_slot.get(queued)).status == JobStatus.WARMING_UP
    waiter = asyncio.create_task(one_slot.wait(queued))
    await gate.open()

    job = await asyncio.wait_for(waiter, 20)

    assert job.status == JobStatus.JOB_COMPLETED
    assert job.termination_reason == TerminationReason.COMPLETED
    assert (await one_slot.get(first)).is_final, "the queued job ran before the first ended"


async def test_several_waiters_on_a_queued_job_all_return_and_a_cancelled_one_leaves_none(
    one_slot: Engine, gates: Gates
) -> None:
    gate = gates()
    await one_slot.submit(shell(gate.wait))
    queued = await one_slot.submit(shell("true"))
    waiters = [asyncio.create_task(one_slot.wait(queued)) for _ in range(3)]
    await slot_waiters(one_slot, queued, 3)
    waiters[0].cancel()
    await gate.open()

    done = await asyncio.wait_for(asyncio.gather(*waiters[1:]), 20)

    assert [job.status for job in done] == [JobStatus.JOB_COMPLETED] * 2
    assert waiters[0].cancelled()
    assert one_slot.scheduler._slot_waiters == {}


async def test_waiting_on_a_queued_job_that_is_stopped_returns_it_ended_without_running(
    one_slot: Engine,
) -> None:
    blocker = await one_slot.submit(shell("sleep 60"))
    queued = await one_slot.submit(shell("echo never"))
    waiter = asyncio.create_task(one_slot.wait(queued))
    await slot_waiters(one_slot, queued, 1)
    assert not waiter.done(), "wait() returned while the job still waited for a slot"

    await one_slot.stop(queued)
    job = await asyncio.wait_for(waiter, 5)

    assert (job.status, job.termination_reason) == (
        JobStatus.JOB_COMPLETED,
        TerminationReason.STOPPED,
    )
    assert job.algorithm_started_at is None
    assert not (await one_slot.get(blocker)).is_final
    await one_slot.stop(blocker)


async def test_waiting_on_a_queued_job_ends_when_the_engine_closes(tmp_path: Path) -> None:
    settings = one_slot_settings(tmp_path)
    engine = Engine(settings, runtime=FakeRuntime(), store=MemoryStore())
    await engine.start()
    await engine.submit(shell("sleep 60"))
    queued = await engine.submit(shell("echo never"))
    waiter = asyncio.create_task(engine.scheduler.wait(queued))
    await slot_waiters(engine, queued, 1)

    await engine.close()

    await asyncio.wait_for(waiter, 5)  # returns instead of hanging on a closed engine


async def test_a_second_engine_on_the_same_data_folder_refuses_and_names_the_holder(
    engine: Engine, tmp_path: Path
) -> None:
    import os

    from localcompute.core.errors import ConfigError

    second = Engine(engine.settings, runtime=FakeRuntime())
    with pytest.raises(ConfigError, match=f"in use by process {os.getpid()}"):
        await second.start()
    await engine.close()  # the folder is free again once the first one is closed
    third = Engine(engine.settings, runtime=FakeRuntime())
    await third.start()
    await third.close()


async def test_a_container_docker_will_not_start_ends_the_job_in_one_line_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    runtime = FakeRuntime()
    refusal = 'could not select device driver "" with capabilities: [[gpu]]'
    runtime.start_errors[Stage.ALGORITHM] = refusal
    engine = Engine(make_settings(tmp_path / "var"), runtime=runtime, store=MemoryStore())
    await engine.start()
    try:
        job = await engine.wait(await engine.submit(shell("echo never")))
        assert (job.status, job.termination_reason) == (
            JobStatus.JOB_COMPLETED,
            TerminationReason.ERROR,
        )
        assert job.status_text == f"the algorithm container could not start: {refusal}"
        assert job.exit_code is None
        left = [c.spec.name for c in runtime.containers.values()]
        assert container_name(engine.instance, job.job_id, Stage.ALGORITHM) not in left
        from localcompute.web.node_views import node_job

        assert node_job(job)["statusText"] == "Failed to run algorithm"
    finally:
        await engine.close()


class LosesTheStartsAnswer(FakeRuntime):
    """Docker goes away while it starts the algorithm: the process runs, the answer never
    comes, and Docker, back, says the container was only created (it never recorded the
    start: what a dockerd killed mid-start does)."""

    def __init__(self) -> None:
        super().__init__()
        self.algorithm_starts = 0

    async def start(self, name: str) -> None:
        if not name.endswith("-algorithm"):
            return await super().start(name)
        self.algorithm_starts += 1
        await super().start(name)
        if self.algorithm_starts == 1:
            container = self.containers[name]
            await container.done.wait()
            # As Docker has it now: made, never started (no process, no exit).
            container.state, container.done = ContainerState.CREATED, asyncio.Event()
            container.process, container.exit_code = None, None
            raise DockerUnavailableError("the Docker engine does not answer: connection aborted")


async def test_an_algorithm_whose_start_went_unanswered_is_not_started_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduler, "DOCKER_RETRY_SECONDS", 0.05)
    runtime = LosesTheStartsAnswer()
    engine = Engine(make_settings(tmp_path / "var"), runtime=runtime, store=MemoryStore())
    await engine.start()
    try:
        runs = tmp_path / "runs"
        job = await engine.wait(await engine.submit(shell(f"echo ran >> {runs}")))
    finally:
        await engine.close()
    # It ran once, as Docker never said; the job says so, and was not started twice.
    assert runs.read_text() == "ran\n"
    assert runtime.algorithm_starts == 1
    assert job.termination_reason == TerminationReason.ERROR, job.status_text
    assert "it may have run, so it is not started again" in job.status_text


async def test_a_datasets_policy_holds_for_a_job_handed_to_the_engine_directly(
    tmp_path: Path,
) -> None:
    """The Python client (or any dialect) cannot pass a dataset's policy by: raw code on a
    dataset that allows none is refused by the engine, as the dialects refuse it."""
    owned = tmp_path / "owned.csv"
    owned.write_text("the owner's\n")
    did = "did:op:" + "d" * 64
    settings = make_settings(tmp_path / "var").model_copy(
        update={
            "datasets": [DatasetSettings(did=did, files=[str(owned)], allow_raw_algorithm=False)]
        }
    )
    engine = Engine(settings, runtime=FakeRuntime(), store=MemoryStore())
    await engine.start()
    try:
        spec = shell("cat /data/inputs/*/0 > $OUTPUTS/copy.txt").model_copy(
            update={"inputs": [InputSpec(did=did, files=[FileSource(path=str(owned))])]}
        )
        with pytest.raises(RefusedError) as refused:
            await engine.submit(spec)
        assert refused.value.payload == {"inputs[0]": "no_raw_algo_allowed"}
        assert await engine.find() == []  # nothing was stored
    finally:
        await engine.close()


class _SlowToReturnAdmissions(MemoryStore):
    """Admission commits, then takes its time to hand the jobs back: the window in which
    a job is at 10 and its task not yet started."""

    def __init__(self) -> None:
        super().__init__()
        self.committed = asyncio.Event()

    async def admit(self, admission: Any) -> list[Job]:
        jobs = await super().admit(admission)
        if jobs:
            self.committed.set()
            await asyncio.sleep(0.05)
        return jobs


async def test_wait_on_a_job_admitted_but_not_yet_started_waits_for_its_end(
    tmp_path: Path,
) -> None:
    store = _SlowToReturnAdmissions()
    engine = Engine(make_settings(tmp_path / "var"), runtime=FakeRuntime(), store=store)
    await engine.start()
    try:
        submitted = asyncio.create_task(engine.submit(shell("echo hi > $OUTPUTS/a")))
        await store.committed.wait()
        [job] = await engine.find()
        assert job.status == JobStatus.JOB_STARTED and not engine.scheduler.is_running(job.job_id)
        ended = await engine.wait(job.job_id)
        assert ended.status == JobStatus.JOB_COMPLETED, "wait returned before the job ran"
        await submitted
    finally:
        await engine.close()


async def test_two_stops_of_a_waiting_job_end_it_once(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "var", environments=[{"id": "test", "max_jobs": 1, "max_job_duration": 60}]
    )
    engine = Engine(settings, runtime=FakeRuntime(), store=MemoryStore())
    await engine.start()
    gates = Gates(tmp_path)
    gate = gates()
    try:
        running = await engine.submit(shell(gate.wait))
        waiting = await engine.submit(shell("echo never"))
        calls = []
        finish = engine.scheduler.pipeline.finish_waiting

        async def counted(job: Job, *, expired: bool = False) -> Job:
            calls.append(job.job_id)
            return await finish(job, expired=expired)

        engine.scheduler.pipeline.finish_waiting = counted  # type: ignore[method-assign]
        first, second = await asyncio.gather(engine.stop(waiting), engine.stop(waiting))
        assert calls == [waiting], "published twice"
        assert first.status == second.status == JobStatus.JOB_COMPLETED
        assert first.termination_reason is TerminationReason.STOPPED
        await gate.open()
        await engine.wait(running)
    finally:
        gates.release()
        await engine.close()


class FilterForgetsItsManifest(FakeRuntime):
    """The output filter exits 0 but its manifest never lands (an upload lost, a helper
    image of the wrong version): the zero alone must not make outputs of nothing."""

    def _host_command(self, spec: Any) -> tuple[list[str], dict[str, str]]:
        argv, env = super()._host_command(spec)
        if spec.name.endswith("-filter"):
            return ["true"], env
        return argv, env


async def test_a_filter_that_exits_0_without_its_manifest_fails_the_job_it_does_not_complete_it(
    tmp_path: Path,
) -> None:
    engine = Engine(
        make_settings(tmp_path / "var"), runtime=FilterForgetsItsManifest(), store=MemoryStore()
    )
    await engine.start()
    try:
        job = await engine.wait(await engine.submit(shell("echo out > $OUTPUTS/out.txt")))
    finally:
        await engine.close()
    # Ended (70, as Ocean ends every job), but as an error, with the reason said.
    assert job.status == JobStatus.JOB_COMPLETED
    assert job.termination_reason == TerminationReason.ERROR, job.status_text
    assert "without its manifest" in job.status_text
    assert not [r for r in job.results if r.type == "output"]
