"""A server killed with SIGKILL comes back whole: the store is the truth."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from localcompute import JobStatus, StopRequest, TerminationReason
from tests.conftest import BUSYBOX_IMAGE, FileServer, docker_ps
from tests.docker.conftest import (
    EngineFactory,
    raw_job,
    result_text,
    url_input,
    wait_final,
    wait_status,
)

pytestmark = pytest.mark.docker


ENV = [{"id": "test", "max_jobs": 1, "max_job_duration": 60}]


async def test_running_algorithm_is_reattached_not_rerun(
    kill_server: object, engine_factory: EngineFactory
) -> None:
    script = (
        "echo before the restart; echo run >> $OUTPUTS/runs.txt; sleep 3; "
        "echo after the restart; echo done > $OUTPUTS/done.txt"
    )
    killed = kill_server([raw_job(script)], ENV)  # type: ignore[operator]
    job_id = killed.job_ids[0]
    assert docker_ps(f"label=localcompute.job_id={job_id}", "status=running"), (
        "the algorithm should outlive the server"
    )
    engine = await engine_factory(environments=ENV)
    assert engine.instance == killed.instance, "the instance id is kept in the store"
    before = await engine.get(job_id)
    # The re-attached job streams again, from the algorithm's start.
    deadline = time.monotonic() + 10
    while (live := engine.live_log(job_id)) is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert live is not None
    streamed = b"".join([chunk async for chunk in live.follow()])
    assert streamed == b"before the restart\nafter the restart\n"
    job = await wait_final(engine, job_id)
    assert job.status == JobStatus.JOB_COMPLETED, job.detail
    assert job.termination_reason == TerminationReason.COMPLETED
    assert job.deadline == before.deadline
    assert result_text(engine, job, "runs.txt") == "run\n"
    assert result_text(engine, job, "done.txt") == "done\n"
    assert result_text(engine, job, "algorithm.log") == streamed.decode()


async def test_algorithm_that_finished_while_down_is_carried_on(
    kill_server: object, engine_factory: EngineFactory
) -> None:
    killed = kill_server([raw_job("echo quick > $OUTPUTS/q.txt; exit 4")], ENV)  # type: ignore[operator]
    job_id = killed.job_ids[0]
    # The algorithm ends while no server watches it.
    containers = docker_ps(f"label=localcompute.job_id={job_id}")
    await asyncio.to_thread(
        subprocess.run, ["docker", "wait", *containers], check=True, capture_output=True
    )
    engine = await engine_factory(environments=ENV)
    job = await wait_final(engine, job_id)
    assert (job.status, job.exit_code) == (JobStatus.JOB_COMPLETED, 4)
    assert job.termination_reason == TerminationReason.FAILED
    assert result_text(engine, job, "q.txt") == "quick\n"


async def test_lost_container_ends_the_job_saying_so(
    kill_server: object, engine_factory: EngineFactory
) -> None:
    killed = kill_server([raw_job("echo hi; sleep 60")], ENV)  # type: ignore[operator]
    job_id = killed.job_ids[0]
    subprocess.run(
        ["docker", "rm", "-f", *docker_ps(f"label=localcompute.job_id={job_id}")], check=True
    )
    engine = await engine_factory(environments=ENV)
    job = await wait_final(engine, job_id)
    assert job.status == JobStatus.JOB_COMPLETED
    assert job.termination_reason == TerminationReason.ERROR
    assert "lost while the server was down" in job.status_text


async def test_deadline_survives_a_restart_and_waiting_jobs_wait_on(
    kill_server: object, engine_factory: EngineFactory
) -> None:
    env = [{"id": "test", "max_jobs": 1, "max_job_duration": 4}]
    killed = kill_server(  # type: ignore[operator]
        [raw_job("sleep 60 # first"), raw_job("echo second > $OUTPUTS/s.txt")], env
    )
    first, second = killed.job_ids
    await asyncio.sleep(1)  # the deadline keeps counting while no server runs
    engine = await engine_factory(environments=env)
    assert (await engine.get(second)).status == JobStatus.WARMING_UP
    job = await wait_final(engine, first, timeout=30)
    assert (job.stopreq, job.termination_reason) == (
        StopRequest.TIME_LIMIT,
        TerminationReason.TIMEOUT,
    )
    assert job.deadline is not None and job.date_finished is not None
    assert job.date_finished - job.deadline < 3
    later = await wait_final(engine, second, timeout=30)
    assert later.status == JobStatus.JOB_COMPLETED
    assert later.algorithm_started_at is not None and job.algorithm_finished_at is not None
    assert later.algorithm_started_at >= job.algorithm_finished_at


async def test_leftover_containers_of_this_instance_only_are_removed(
    engine_factory: EngineFactory,
) -> None:
    engine = await engine_factory()
    instance = engine.instance
    await engine.close()

    ours = _labelled_container(instance, "no-such-job")
    theirs = _labelled_container("another-instance", "their-job")
    try:
        await engine_factory()
        assert docker_ps(f"id={ours}") == []
        assert docker_ps(f"id={theirs}") != []
    finally:
        subprocess.run(["docker", "rm", "-f", ours, theirs], capture_output=True)


def _labelled_container(owner: str, job_id: str, stage: str = "algorithm") -> str:
    return subprocess.run(
        [
            "docker",
            "create",
            "--label",
            f"localcompute.instance={owner}",
            "--label",
            f"localcompute.job_id={job_id}",
            "--label",
            f"localcompute.stage={stage}",
            BUSYBOX_IMAGE,
            "sleep",
            "30",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


async def test_a_running_server_sweeps_leftovers_on_its_timer(
    engine_factory: EngineFactory, data_dir: Path
) -> None:
    engine = await engine_factory(reconcile_interval=0.3)
    ours = _labelled_container(engine.instance, "no-such-job", "fetch")
    theirs = _labelled_container("another-instance", "their-job")
    # A job folder with a quota image and no job: what a crash mid-release leaves.
    ghost = data_dir / "jobs" / "ghost-job"
    (ghost / "data").mkdir(parents=True)
    (ghost / "disk.img").write_bytes(b"")
    try:
        deadline = time.monotonic() + 10
        while docker_ps(f"id={ours}") and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert docker_ps(f"id={ours}") == [], "the sweep never removed the leftover container"
        assert docker_ps(f"id={theirs}") != [], "another instance's container was touched"
        while (ghost / "disk.img").exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not (ghost / "disk.img").exists()
        metrics = (await engine.metrics_text()).decode()
        assert 'localcompute_reconciled_total{kind="container"} 1.0' in metrics
        assert 'localcompute_reconciled_total{kind="mount"} 1.0' in metrics
    finally:
        subprocess.run(["docker", "rm", "-f", ours, theirs], capture_output=True)


async def test_a_clean_shutdown_leaves_no_helper_and_the_next_start_finishes(
    engine_factory: EngineFactory, file_server: FileServer
) -> None:
    """Closed mid-fetch: nothing of the instance stays; the next start fetches again."""
    file_server.delays["slow.csv"] = 3
    spec = raw_job(
        "cat /data/inputs/*/0 > $OUTPUTS/out.txt",
        inputs=[url_input("did:op:" + "b" * 64, file_server.add("slow.csv", "slow\n"))],
    )
    engine = await engine_factory(environments=ENV)
    job_id = await engine.submit(spec)
    deadline = time.monotonic() + 20
    while not docker_ps(f"label=localcompute.job_id={job_id}", "label=localcompute.stage=fetch"):
        assert time.monotonic() < deadline, "the fetch never started"
        await asyncio.sleep(0.05)
    await engine.close()
    assert docker_ps(f"label=localcompute.instance={engine.instance}") == []
    file_server.delays.clear()
    again = await engine_factory(environments=ENV)
    job = await wait_final(again, job_id)
    assert (job.status, job.termination_reason) == (
        JobStatus.JOB_COMPLETED,
        TerminationReason.COMPLETED,
    ), job.status_text
    assert result_text(again, job, "out.txt") == "slow\n"


async def test_a_clean_shutdown_keeps_the_running_algorithm_for_the_next_start(
    engine_factory: EngineFactory,
) -> None:
    engine = await engine_factory(environments=ENV)
    job_id = await engine.submit(raw_job("echo run >> $OUTPUTS/runs.txt; sleep 2"))
    await wait_status(engine, job_id, JobStatus.RUNNING_ALGORITHM)
    running = [f"label=localcompute.job_id={job_id}", "status=running"]
    deadline = time.monotonic() + 10
    while not docker_ps(*running):
        assert time.monotonic() < deadline, "the algorithm never ran"
        await asyncio.sleep(0.05)
    await engine.close()
    left = docker_ps(f"label=localcompute.instance={engine.instance}")
    assert left == docker_ps(*running) and len(left) == 1
    again = await engine_factory(environments=ENV)
    job = await wait_final(again, job_id)
    assert job.termination_reason == TerminationReason.COMPLETED, job.status_text
    assert result_text(again, job, "runs.txt") == "run\n"
