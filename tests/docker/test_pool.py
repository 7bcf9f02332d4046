"""The host pool on a real engine: pinned cores seen from inside, jobs waiting for what
others hold, and a pool rebuilt exactly after the server is killed."""

from __future__ import annotations

import asyncio

import pytest

from localcompute import JobStatus
from localcompute.engine.amounts import parse_cpuset
from localcompute.runtime.local.disk import IMAGE_NAME
from localcompute.runtime.workspace import Workspace
from tests.conftest import docker_ps
from tests.docker.conftest import EngineFactory, raw_job, result_text, wait_final, wait_status

pytestmark = pytest.mark.docker

# What the kernel lets the process run on: the container's cpuset, whatever the cgroup layout.
CORES = "grep Cpus_allowed_list /proc/self/status | cut -f2 > $OUTPUTS/cores.txt"


async def test_two_concurrent_pinned_jobs_run_on_disjoint_cores(
    engine_factory: EngineFactory,
) -> None:
    engine = await engine_factory(environments=[{"id": "test", "cpu": 1, "max_jobs": 2}])
    # Each waits for the other to have started, so they surely run at once.
    script = f"{CORES}; sleep 1.5"
    ids = [await engine.submit(raw_job(script)) for _ in range(2)]
    jobs = [await wait_final(engine, job_id) for job_id in ids]
    seen = [parse_cpuset(result_text(engine, job, "cores.txt").strip()) for job in jobs]
    assert all(len(cores) == 1 for cores in seen), seen
    assert set(seen[0]).isdisjoint(seen[1])
    held = [job.allocation.cpuset for job in jobs if job.allocation]
    assert [tuple(c) for c in held] == seen  # what the store says is what the kernel did
    a, b = jobs
    assert a.algorithm_finished_at and b.algorithm_started_at
    assert b.algorithm_started_at < a.algorithm_finished_at, "they should have overlapped"


@pytest.mark.parametrize(
    ("pool", "env"),
    [
        ({"cpus": "0"}, {"id": "test", "cpu": 1, "max_jobs": 2}),
        ({"ram_gb": 1.5}, {"id": "test", "cpu": 0.5, "ram_gb": 1, "max_jobs": 2}),
    ],
    ids=["a core", "ram"],
)
async def test_a_job_waits_for_what_another_holds_and_runs_when_it_is_freed(
    engine_factory: EngineFactory, pool: dict[str, object], env: dict[str, object]
) -> None:
    engine = await engine_factory(environments=[env], pool=pool)
    first = await engine.submit(raw_job("sleep 2"))
    second = await engine.submit(raw_job("echo ran > $OUTPUTS/ran.txt"))
    await wait_status(engine, first, JobStatus.RUNNING_ALGORITHM)
    # A slot is free (max_jobs 2), the pool is not: the second job waits at 1.
    assert (await engine.get(second)).status == JobStatus.WARMING_UP
    done = await wait_final(engine, first)
    later = await wait_final(engine, second)
    assert result_text(engine, later, "ran.txt") == "ran\n"
    assert later.algorithm_started_at and done.algorithm_finished_at
    assert later.algorithm_started_at >= done.algorithm_finished_at
    states = await engine.environment_states()
    assert states["test"].in_use == {"cpu": 0, "ram": 0, "disk": 0, "gpu": 0}


async def test_after_a_kill_the_pool_and_the_job_disks_are_rebuilt_exactly(
    kill_server: object, engine_factory: EngineFactory, data_dir: object
) -> None:
    env = [{"id": "test", "cpu": 1, "max_jobs": 3, "max_job_duration": 60, "disk_gb": 0.05}]
    script = "echo before > $OUTPUTS/a.txt; sleep 3; echo after >> $OUTPUTS/a.txt"
    two_cores = {"cpus": "0-1"}
    specs = [raw_job(script) for _ in range(3)]
    killed = kill_server(specs, {"environments": env, "pool": two_cores})  # type: ignore[operator]
    first, second, third = killed.job_ids
    engine = await engine_factory(environments=env, pool=two_cores)
    held = {j.job_id: j.allocation for j in await engine.store.active_jobs()}
    # Two cores, two jobs: the third was never admitted, and is not admitted twice now.
    assert set(held) == {first, second}
    assert (await engine.get(third)).status == JobStatus.WARMING_UP
    cores = [c for a in held.values() if a for c in a.cpuset]
    assert sorted(cores) == [0, 1]
    assert (await engine.environment_states())["test"].in_use["cpu"] == 2
    jobs = [await wait_final(engine, job_id) for job_id in (first, second, third)]
    for job in jobs:
        assert job.status == JobStatus.JOB_COMPLETED, job.detail
        # Its disk survived the kill: what it wrote before and after is all there.
        assert result_text(engine, job, "a.txt") == "before\nafter\n"
        ws = Workspace.of(engine.settings.data_dir, job.job_id)
        assert not ws.data.exists() and not (ws.root / IMAGE_NAME).exists()
    await asyncio.sleep(0)
    assert docker_ps(f"label=localcompute.instance={engine.instance}") == []
