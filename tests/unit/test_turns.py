"""Fair turns between consumers: the pool's plan offers waiting jobs by each consumer's
recent use, not by age alone; a consumer's own jobs keep their order; caps and weights."""

from __future__ import annotations

import itertools

import pytest

from localcompute.core.jobspec import JobResources
from localcompute.core.models import AdmissionView, Allocation
from localcompute.core.settings import EnvironmentSettings
from localcompute.engine.amounts import GIB, Capacity
from localcompute.engine.consumer_limits import Caps
from localcompute.engine.pool import Pool
from localcompute.engine.turns import FairTurns, UseLedger

_ids = itertools.count()
NOW = 1_000_000.0
ENV = EnvironmentSettings(id="e", cpu=1, ram_gb=1, max_jobs=100)


def job(
    owner: str, *, env: str = "e", created: float | None = None, cpu: float = 1
) -> AdmissionView:
    n = next(_ids)
    return AdmissionView(
        job_id=f"{owner}-{n}",
        environment=env,
        owner=owner,
        date_created=created if created is not None else n,
        resources=JobResources(cpu=cpu),
    )


_cores = itertools.count()


def running(j: AdmissionView, *, since: float | None = None, cpu: float = 1) -> AdmissionView:
    """`j` holding the next whole cores of the pool (from core 0 up in each test)."""
    cores = [next(_cores) for _ in range(int(cpu))]
    allocation = Allocation(cpu=cpu, cpuset=cores, ram_bytes=GIB, disk_bytes=0)
    return j.model_copy(update={"allocation": allocation, "held_since": since})


def pool(
    cores: int,
    ledger: UseLedger | None = None,
    *,
    weights: dict[str, float] | None = None,
    caps: Caps | None = None,
    envs: tuple[EnvironmentSettings, ...] = (ENV,),
) -> Pool:
    turns = FairTurns(
        ledger or UseLedger(3600),
        weight=lambda o: (weights or {}).get(o, 1.0),
        caps=lambda o, e: caps or Caps(0, 0),
        clock=lambda: NOW,
    )
    by_id = {e.id: e for e in envs}
    return Pool(Capacity(tuple(range(cores)), 64 * GIB, 100 * GIB, ()), by_id.get, turns)


@pytest.fixture(autouse=True)
def _cores_from_zero() -> None:
    global _cores
    _cores = itertools.count()


def owners(plan: list[tuple[str, Allocation]]) -> list[str]:
    return [job_id.rpartition("-")[0] for job_id, _ in plan]


def test_one_consumers_long_queue_does_not_hold_back_anothers_single_job() -> None:
    flood = [job("a") for _ in range(1000)]
    late = job("b")  # submitted after all of a's
    active = [running(job("a"), since=NOW - 10)]  # a holds one core already
    plan = pool(2).plan(active, [*flood, late])
    assert owners(plan) == ["b"]  # the one free core goes to b, not to a's oldest


def test_without_history_free_slots_go_round_robin_and_each_consumers_jobs_keep_their_order() -> (
    None
):
    waiting = [job("a") for _ in range(4)] + [job("b") for _ in range(4)] + [job("c")]
    plan = pool(6).plan([], waiting)
    assert owners(plan) == ["a", "b", "c", "a", "b", "a"]
    a_jobs = [j for j, _ in plan if j.startswith("a-")]
    assert a_jobs == [w.job_id for w in waiting if w.owner == "a"][:3]


def test_first_come_first_served_without_turns() -> None:
    waiting = [job("a") for _ in range(4)] + [job("b")]
    plain = Pool(Capacity((0, 1), 64 * GIB, 100 * GIB, ()), {"e": ENV}.get)
    assert owners(plain.plan([], waiting)) == ["a", "a"]


def test_recent_use_decays_with_the_half_life_and_is_divided_by_the_weight() -> None:
    ledger = UseLedger(half_life=100)
    ledger.charge("a", 800, at=NOW - 300)  # three half-lives ago: counts as 100
    ledger.charge("b", 150, at=NOW)
    assert round(ledger.use("a", NOW), 6) == 100
    plan = pool(1, ledger).plan([], [job("b"), job("a")])
    assert owners(plan) == ["a"]  # a's past use weighs less than b's
    heavy = pool(1, ledger, weights={"b": 2}).plan([], [job("a"), job("b")])
    assert owners(heavy) == ["b"]  # b's 150 counts as 75 at weight 2


def test_running_jobs_count_as_use_as_they_go() -> None:
    active = [running(job("a"), since=NOW - 100), running(job("b"), since=NOW - 5)]
    plan = pool(3).plan(active, [job("a"), job("b")])
    assert owners(plan) == ["b"]


def test_a_consumer_at_its_running_cap_waits_and_the_slot_goes_to_another() -> None:
    active = [running(job("a"), since=NOW)]
    plan = pool(4, caps=Caps(1, 0)).plan(active, [job("a"), job("a"), job("b")])
    assert owners(plan) == ["b"]
    env_cap = EnvironmentSettings(id="gpuish", cpu=1, ram_gb=1, max_jobs=4)
    capped = pool(4, caps=Caps(0, 1), envs=(ENV, env_cap))
    waiting = [job("a", env="gpuish"), job("a", env="gpuish"), job("a")]
    assert [j for j, _ in capped.plan([], waiting)] == [waiting[0].job_id, waiting[2].job_id]


def test_the_first_job_offered_that_does_not_fit_still_holds_its_reservation() -> None:
    big = EnvironmentSettings(id="big", cpu=2, ram_gb=1, max_jobs=4)
    small = EnvironmentSettings(id="small", cpu=1, ram_gb=1, max_jobs=4)
    fair = pool(3, envs=(big, small))
    active = [running(job("a", env="small"), since=NOW - 1, cpu=1) for _ in range(2)]
    # b's big job is offered first (b has no use) and cannot fit on the one free core:
    # a's small job after it would take the core the big job waits for.
    plan = fair.plan(active, [job("a", env="small"), job("b", env="big", cpu=2)])
    assert plan == []
