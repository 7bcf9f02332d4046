"""The host pool: start-up checks, pinned and shared cores, waiting, reservations, GPUs."""

from __future__ import annotations

import itertools

import pytest

from localcompute.core.errors import ConfigError
from localcompute.core.jobspec import JobResources
from localcompute.core.models import AdmissionView, Allocation
from localcompute.core.settings import EnvironmentSettings
from localcompute.engine.amounts import GIB, Capacity, cpuset_text, parse_cpuset
from localcompute.engine.pool import Pool

_ids = itertools.count()


def job(env: str, resources: JobResources | None = None) -> AdmissionView:
    """A waiting job, as admission sees it."""
    return AdmissionView(
        job_id=f"j{next(_ids)}", environment=env, resources=resources or JobResources()
    )


def running(j: AdmissionView, allocation: Allocation) -> AdmissionView:
    return j.model_copy(update={"allocation": allocation})


def make_pool(
    *envs: EnvironmentSettings, cores: int = 4, ram_gb: float = 16, gpus: tuple[str, ...] = ()
) -> Pool:
    by_id = {e.id: e for e in envs}
    return Pool(Capacity(tuple(range(cores)), int(ram_gb * GIB), 100 * GIB, gpus), by_id.get)


def run_plan(
    pool: Pool, active: list[AdmissionView], waiting: list[AdmissionView]
) -> list[AdmissionView]:
    """Admit what the plan says; return the admitted jobs as running."""
    chosen = dict(pool.plan(active, waiting))
    return [running(j, chosen[j.job_id]) for j in waiting if j.job_id in chosen]


def test_cpusets_round_trip() -> None:
    assert parse_cpuset("0-3,6,8-9") == (0, 1, 2, 3, 6, 8, 9)
    assert cpuset_text([9, 8, 6, 0, 1, 2, 3]) == "0-3,6,8-9"


def test_environments_that_overlap_are_accepted_and_each_contention_is_named() -> None:
    ram_a, ram_b = (EnvironmentSettings(id=i, cpu=0.5, ram_gb=8.8) for i in ("ram-a", "ram-b"))
    small = EnvironmentSettings(id="small", cpu=1, ram_gb=1)
    whole = EnvironmentSettings(id="whole", cpu=4, ram_gb=2)
    envs = [ram_a, ram_b, small, whole]
    lines = make_pool(*envs, cores=4, ram_gb=16).check(envs)
    assert lines == [
        "environments 'ram-a' and 'ram-b' contend for ram: one job of each does not fit "
        "the pool at once, so they wait for each other",
        "environments 'ram-a' and 'whole' contend for cpu: one job of each does not fit "
        "the pool at once, so they wait for each other",
        "environments 'ram-b' and 'whole' contend for cpu: one job of each does not fit "
        "the pool at once, so they wait for each other",
        "environments 'small' and 'whole' contend for cpu: one job of each does not fit "
        "the pool at once, so they wait for each other",
    ]
    both = [EnvironmentSettings(id=i, cpu=4, ram_gb=9) for i in ("x", "y")]
    [line] = make_pool(*both, cores=4, ram_gb=16).check(both)
    assert line.startswith("environments 'x' and 'y' contend for cpu and ram:")
    fits = [EnvironmentSettings(id=f"e{i}", cpu=1, max_jobs=8) for i in range(4)]
    assert make_pool(*fits, cores=4).check(fits) == []  # max_jobs beyond the pool: waiting


def test_an_environment_whose_one_job_cannot_fit_the_pool_alone_is_refused() -> None:
    envs = [EnvironmentSettings(id="ok", cpu=1), EnvironmentSettings(id="huge", cpu=8)]
    with pytest.raises(ConfigError, match=r"^environment 'huge' cannot run one job: cpu: needs 8"):
        make_pool(*envs, cores=4).check(envs)
    ram = [EnvironmentSettings(id="ram", cpu=0.5, ram_gb=17)]
    with pytest.raises(ConfigError, match=r"'ram' cannot run one job: ram: needs 17 GiB; 16\.00"):
        make_pool(*ram, ram_gb=16).check(ram)
    gpu = [EnvironmentSettings(id="g", gpus=2, gpu_devices=["0"])]
    with pytest.raises(ConfigError, match="gpu: needs 2"):
        make_pool(*gpu).check(gpu)


def test_a_big_job_waiting_behind_small_ones_is_admitted_not_starved() -> None:
    """Small jobs keep arriving and finishing; the big one, oldest of the waiting, gets in
    as soon as enough of them have finished, and none of the newcomers takes its room."""
    small = EnvironmentSettings(id="small", cpu=0.5, ram_gb=4, max_jobs=4)
    big = EnvironmentSettings(id="big", cpu=0.5, ram_gb=0.55 * 16)
    pool = make_pool(small, big, cores=4, ram_gb=16)
    pool.check([small, big])  # accepted: four small jobs and the big one cannot run at once
    active = run_plan(pool, [], [job("small") for _ in range(4)])
    assert len(active) == 4
    waiting = [job("big"), job("small")]
    finished = 0
    while not any(j.environment == "big" for j in active):
        assert finished < 4, "the big job starved behind small ones"
        active = active[1:]  # the oldest small job finishes
        finished += 1
        admitted = run_plan(pool, active, waiting)
        if not any(j.environment == "big" for j in admitted):
            assert admitted == []  # a small newcomer would take what the big job waits for
        active += admitted
        taken = {a.job_id for a in admitted}
        waiting = [j for j in waiting if j.job_id not in taken] + [job("small")]
    assert finished == 3  # three small jobs finished: 12 GiB free fits its 8.8 GiB
    held = sum(a.allocation.ram_bytes for a in active if a.allocation)
    assert held <= 16 * GIB


def test_pinned_jobs_get_disjoint_cores_and_fractions_stay_off_them() -> None:
    whole = EnvironmentSettings(id="whole", cpu=2, max_jobs=2)
    part = EnvironmentSettings(id="part", cpu=0.5, max_jobs=4)
    pool = make_pool(whole, part, cores=4)
    first = run_plan(pool, [], [job("whole")])
    assert first[0].allocation is not None and first[0].allocation.cpuset == [0, 1]
    fractions = run_plan(pool, first, [job("part") for _ in range(4)])
    assert len(fractions) == 4
    for j in fractions:
        assert j.allocation is not None and set(j.allocation.cpuset) <= {2, 3}
    # Four halves fill cores 2 and 3: another pinned job must wait.
    assert pool.plan([*first, *fractions], [job("whole")]) == []


def test_a_job_waits_for_ram_held_by_others_and_runs_when_it_is_freed() -> None:
    env = EnvironmentSettings(id="e", cpu=0.5, ram_gb=6, max_jobs=4)
    pool = make_pool(env, ram_gb=16)
    a, b, c = job("e"), job("e"), job("e")
    started = run_plan(pool, [], [a, b, c])
    assert [j.job_id for j in started] == [a.job_id, b.job_id]  # 12 of 16 GiB; c waits
    assert [jid for jid, _ in pool.plan(started[1:], [c])] == [c.job_id]


def test_a_big_job_is_not_starved_by_small_ones_behind_it() -> None:
    big = EnvironmentSettings(id="big", cpu=3, max_jobs=1)
    small = EnvironmentSettings(id="small", cpu=1, max_jobs=4)
    pool = make_pool(big, small, cores=4)
    held = run_plan(pool, [], [job("small"), job("small")])  # cores 0 and 1
    waiting_big = job("big")
    # The big job needs 3 cores; 2 are free. The small job behind it may not take them.
    assert pool.plan(held, [waiting_big, job("small")]) == []
    # One small job ends: the big one gets its three cores before any younger job.
    admitted = pool.plan(held[1:], [waiting_big, job("small")])
    assert [jid for jid, _ in admitted] == [waiting_big.job_id]


def test_small_jobs_may_use_what_the_waiting_big_job_does_not_need() -> None:
    gpu_env = EnvironmentSettings(id="gpu", cpu=1, gpus=1, gpu_devices=["0"], max_jobs=2)
    cpu_env = EnvironmentSettings(id="cpu", cpu=1, max_jobs=4)
    pool = make_pool(gpu_env, cpu_env, cores=4, gpus=("0",))
    holder = run_plan(pool, [], [job("gpu")])
    blocked, younger = job("gpu"), job("cpu")
    # The GPU is taken, so the second GPU job waits; a CPU job may run on a core the
    # GPU job would not have lacked (3 free, it needs 1).
    assert [jid for jid, _ in pool.plan(holder, [blocked, younger])] == [younger.job_id]


def test_a_gpu_goes_to_one_job_at_a_time() -> None:
    env = EnvironmentSettings(id="g", cpu=0.5, gpus=1, gpu_devices=["a", "b"], max_jobs=3)
    pool = make_pool(env, gpus=("a", "b"))
    started = run_plan(pool, [], [job("g"), job("g"), job("g")])
    assert [j.allocation.gpus for j in started if j.allocation] == [["a"], ["b"]]
    # When the first ends, the third gets the device it left.
    [(_, allocation)] = pool.plan(started[1:], [job("g")])
    assert allocation.gpus == ["a"]


def test_a_request_lowers_what_a_job_holds() -> None:
    env = EnvironmentSettings(id="e", cpu=4, ram_gb=8, max_jobs=4)
    pool = make_pool(env, cores=4)
    [small] = run_plan(pool, [], [job("e", JobResources(cpu=1, ram_gb=2))])
    assert small.allocation == Allocation(cpu=1, cpuset=[0], ram_bytes=2 * GIB, disk_bytes=GIB)
    assert pool.in_use([small]) == {"cpu": 1, "ram": 2, "disk": 1, "gpu": 0}


def test_max_jobs_holds_a_job_back_without_blocking_the_others() -> None:
    one = EnvironmentSettings(id="one", cpu=1, max_jobs=1)
    other = EnvironmentSettings(id="other", cpu=1, max_jobs=2)
    pool = make_pool(one, other, cores=4)
    held = run_plan(pool, [], [job("one")])
    admitted = pool.plan(held, [job("one"), job("other")])
    assert len(admitted) == 1 and admitted[0][1].cpuset == [1]


def two_nodes(*envs: EnvironmentSettings, cores: int = 2, gpus: tuple[str, ...] = ()) -> Pool:
    by_id = {e.id: e for e in envs}
    return Pool(
        [
            Capacity(tuple(range(cores)), 8 * GIB, 100 * GIB, gpus, "a", {"zone": "left"}),
            Capacity(
                tuple(range(cores)), 8 * GIB, 100 * GIB, gpus, "b", {"zone": "right", "ssd": ""}
            ),
        ],
        by_id.get,
    )


def test_on_two_nodes_jobs_spread_and_each_allocation_names_its_node() -> None:
    env = EnvironmentSettings(id="e", cpu=2, ram_gb=6, max_jobs=4)
    pool = two_nodes(env)
    first, second, third = job("e"), job("e"), job("e")
    admitted = run_plan(pool, [], [first, second, third])
    # Each node takes one (both its cores, most of its RAM); the third waits.
    assert sorted(a.allocation.node for a in admitted if a.allocation) == ["a", "b"]
    assert [a.job_id for a in admitted] == [first.job_id, second.job_id]
    # Cores are numbered per node: both jobs hold cores 0-1, of different nodes.
    assert all(a.allocation and a.allocation.cpuset == [0, 1] for a in admitted)
    assert pool.capacity.ram_bytes == 16 * GIB and len(pool.capacity.cores) == 4
    assert pool.in_use(admitted) == {"cpu": 4.0, "ram": 12.0, "disk": 2.0, "gpu": 0.0}
    # Two environments that each take a whole node do not contend: they run side by side.
    other = EnvironmentSettings(id="o", cpu=2, ram_gb=6)
    assert two_nodes(env, other).check([env, other]) == []


def test_an_environment_naming_a_node_label_runs_only_there() -> None:
    right = EnvironmentSettings(id="r", cpu=1, ram_gb=1, node_label="zone=right", max_jobs=4)
    ssd = EnvironmentSettings(id="s", cpu=1, ram_gb=1, node_label="ssd", max_jobs=4)
    pool = two_nodes(right, ssd)
    admitted = run_plan(pool, [], [job("r"), job("s"), job("r")])
    assert [a.allocation.node for a in admitted if a.allocation] == ["b", "b"]  # 2 cores on b
    nowhere = EnvironmentSettings(id="n", node_label="zone=up")
    with pytest.raises(ConfigError) as refused:
        two_nodes(nowhere).check([nowhere])
    assert str(refused.value).startswith(
        "environment 'n' cannot run one job: node a: node: it lacks the label zone=up; "
        "node b: node: it lacks the label zone=up"
    )


def test_a_big_job_waiting_for_its_node_does_not_hold_back_the_other_node() -> None:
    big = EnvironmentSettings(id="big", cpu=2, ram_gb=2, node_label="zone=right")
    small = EnvironmentSettings(id="small", cpu=1, ram_gb=1, max_jobs=4)
    pool = two_nodes(big, small)
    on_b = running(
        job("small"), Allocation(cpu=1, cpuset=[0], ram_bytes=GIB, disk_bytes=1, node="b")
    )
    waiting = [job("big"), job("small"), job("small"), job("small")]
    admitted = run_plan(pool, [on_b], waiting)
    # The big job waits for b's core 0; the small ones fill a, and none takes b's core 1.
    assert [a.allocation.node for a in admitted if a.allocation] == ["a", "a"]


def test_gpus_of_the_same_name_on_two_nodes_are_two_gpus() -> None:
    env = EnvironmentSettings(id="g", cpu=0.5, gpus=1, max_jobs=4)
    pool = two_nodes(env, gpus=("0",))
    admitted = run_plan(pool, [], [job("g"), job("g"), job("g")])
    assert sorted((a.allocation.node, *a.allocation.gpus) for a in admitted if a.allocation) == [
        ("a", "0"),
        ("b", "0"),
    ]
    assert pool.in_use(admitted)["gpu"] == 2.0
    assert pool.capacity.gpus == ("a:0", "b:0")
