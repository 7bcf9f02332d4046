"""The host's resources as one pool shared by every environment: pure logic, no I/O.

A job holds an `Allocation` (cores, a CPU amount, RAM, disk, GPU devices) from
admission until its containers are gone. What is held is always the sum of the
allocations stored with the running jobs, so after a restart the pool is rebuilt
from the store and never counted twice.

CPU is counted per core, in thousandths: a job of whole CPUs takes whole free
cores (pinned, disjoint from every other job); a job of a fraction of a CPU takes
that share of the least used cores that are not pinned, so fractional jobs share
cores only with each other.

Admission is first come, first served over the jobs whose environment has a free
slot. The oldest job that does not fit holds a reservation: a younger job is
admitted only if, after it, every resource the blocked job needs is still as
available as before (up to what it needs). So small jobs fill what a big job
cannot use, and never what it waits for. That is also why environments whose jobs
cannot all run at once are accepted (a "whole machine" one beside a "small" one): their
jobs wait for each other, and the start-up log names each pair that contends.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from localcompute.core.errors import ConfigError
from localcompute.core.models import Allocation, Claim, JobResources
from localcompute.core.settings import EnvironmentSettings

GIB = 1024**3
MILLI = 1000  # CPU is counted in thousandths of a core


@dataclass(frozen=True)
class Capacity:
    """What the pool offers: measured on the host, capped by [pool]."""

    cores: tuple[int, ...]
    ram_bytes: int
    disk_bytes: int
    gpus: tuple[str, ...]

    def describe(self) -> str:
        gpus = f", GPUs {', '.join(self.gpus)}" if self.gpus else ""
        return (
            f"{len(self.cores)} cores ({cpuset_text(self.cores)}), "
            f"{self.ram_bytes / GIB:.1f} GiB RAM, {self.disk_bytes / GIB:.1f} GiB disk{gpus}"
        )


@dataclass(frozen=True)
class Demand:
    """What one job needs of the pool."""

    cpu: float
    pinned: bool
    ram_bytes: int
    disk_bytes: int
    gpus: int
    gpu_choices: tuple[str, ...]  # the devices its environment may give

    @property
    def cpu_milli(self) -> int:
        return round(self.cpu * MILLI)


@dataclass
class Usage:
    """What the running jobs hold."""

    core_milli: Counter[int]
    pinned: set[int]
    cpu_milli: int
    ram_bytes: int
    disk_bytes: int
    gpus: set[str]

    @classmethod
    def of(cls, allocations: Iterable[Allocation]) -> Usage:
        usage = cls(Counter(), set(), 0, 0, 0, set())
        for allocation in allocations:
            usage.add(allocation)
        return usage

    def copy(self) -> Usage:
        return Usage(
            self.core_milli.copy(),
            set(self.pinned),
            self.cpu_milli,
            self.ram_bytes,
            self.disk_bytes,
            set(self.gpus),
        )

    def add(self, allocation: Allocation) -> None:
        self.cpu_milli += round(allocation.cpu * MILLI)
        if allocation.cpuset:
            share = round(allocation.cpu * MILLI) / len(allocation.cpuset)
            for core in allocation.cpuset:
                self.core_milli[core] += round(share)
            if allocation.pinned:
                self.pinned.update(allocation.cpuset)
        self.ram_bytes += allocation.ram_bytes
        self.disk_bytes += allocation.disk_bytes
        self.gpus.update(allocation.gpus)


def parse_cpuset(text: str) -> tuple[int, ...]:
    """ "0-3,6" → (0, 1, 2, 3, 6)."""
    cores: set[int] = set()
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        cores.update(range(int(low), int(high or low) + 1))
    return tuple(sorted(cores))


def cpuset_text(cores: Iterable[int]) -> str:
    """(0, 1, 2, 3, 6) → "0-3,6"."""
    ranges: list[list[int]] = []
    for core in sorted(cores):
        if ranges and core == ranges[-1][1] + 1:
            ranges[-1][1] = core
        else:
            ranges.append([core, core])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


class Pool:
    def __init__(
        self,
        capacity: Capacity,
        environment: Callable[[str], EnvironmentSettings | None],
    ) -> None:
        self.capacity = capacity
        self._environment = environment

    def __repr__(self) -> str:
        return f"<Pool {self.capacity.describe()}>"

    # -- demands -----------------------------------------------------------

    def demand(self, env: EnvironmentSettings, wanted: JobResources | None = None) -> Demand:
        """What one job of `env` needs; a request lowers the environment's amounts."""
        wanted = wanted or JobResources()
        cpu = env.cpu if wanted.cpu is None else min(env.cpu, wanted.cpu)
        ram_gb = env.ram_gb if wanted.ram_gb is None else min(env.ram_gb, wanted.ram_gb)
        disk_gb = env.disk_gb if wanted.disk_gb is None else min(env.disk_gb, wanted.disk_gb)
        gpus = env.gpu_count if wanted.gpus is None else min(env.gpu_count, wanted.gpus)
        return Demand(
            cpu=cpu,
            pinned=float(cpu).is_integer(),
            ram_bytes=int(ram_gb * GIB),
            # A request of 0 GB still gets the smallest disk a job can work in.
            disk_bytes=int(max(disk_gb, 0.01) * GIB),
            gpus=gpus,
            gpu_choices=tuple(env.gpu_devices) or self.capacity.gpus,
        )

    def held(self, job: Claim) -> Allocation:
        """What a running job holds: its stored allocation. A job admitted before the
        pool existed is counted at its environment's amounts, on no particular core."""
        if job.allocation is not None:
            return job.allocation
        env = self._environment(job.environment)
        if env is None:
            return Allocation(cpu=0.001, ram_bytes=1, disk_bytes=0)
        d = self.demand(env, job.resources)
        return Allocation(cpu=d.cpu, ram_bytes=d.ram_bytes, disk_bytes=d.disk_bytes)

    # -- fitting -------------------------------------------------------------

    def fit(self, usage: Usage, d: Demand) -> Allocation | None:
        """The allocation `d` gets with `usage` held, or None when something is short."""
        if self.shortage(usage, d) is not None:
            return None
        return Allocation(
            cpu=d.cpu,
            cpuset=list(self._cores_for(usage, d) or []),
            ram_bytes=d.ram_bytes,
            disk_bytes=d.disk_bytes,
            gpus=[g for g in d.gpu_choices if g not in usage.gpus][: d.gpus],
        )

    def _cores_for(self, usage: Usage, d: Demand) -> list[int] | None:
        if d.pinned:
            free = [c for c in self.capacity.cores if usage.core_milli[c] == 0]
            need = int(d.cpu)
            return free[:need] if len(free) >= need else None
        # A fraction spreads over as many cores as it spans, the least used ones first.
        span = max(1, math.ceil(d.cpu))
        share = math.ceil(d.cpu_milli / span)
        open_cores = sorted(
            (c for c in self.capacity.cores if c not in usage.pinned),
            key=lambda c: (usage.core_milli[c], c),
        )
        fitting = [c for c in open_cores if usage.core_milli[c] + share <= MILLI]
        return sorted(fitting[:span]) if len(fitting) >= span else None

    def shortage(self, usage: Usage, d: Demand) -> str | None:
        """Which resource `d` lacks with `usage` held, in words; None when it fits."""
        short = self.shortages(usage, d)
        return short[0] if short else None

    def shortages(self, usage: Usage, d: Demand) -> list[str]:
        """Every resource `d` lacks with `usage` held, each in words starting with its name."""
        cap = self.capacity
        short: list[str] = []
        if self._cores_for(usage, d) is None:
            kind = f"{int(d.cpu)} whole cores" if d.pinned else f"{d.cpu:g} of a core's time"
            free = sum(1 for c in cap.cores if usage.core_milli[c] == 0)
            short.append(f"cpu: needs {kind}; {free} of the pool's {len(cap.cores)} cores are free")
        if usage.ram_bytes + d.ram_bytes > cap.ram_bytes:
            left = (cap.ram_bytes - usage.ram_bytes) / GIB
            short.append(
                f"ram: needs {d.ram_bytes / GIB:g} GiB; {left:.2f} GiB of the pool is free"
            )
        if usage.disk_bytes + d.disk_bytes > cap.disk_bytes:
            left = (cap.disk_bytes - usage.disk_bytes) / GIB
            short.append(
                f"disk: needs {d.disk_bytes / GIB:g} GiB; {left:.2f} GiB of the pool is free"
            )
        free_gpus = [g for g in d.gpu_choices if g not in usage.gpus]
        if len(free_gpus) < d.gpus:
            short.append(
                f"gpu: needs {d.gpus}; {len(free_gpus)} of "
                f"{', '.join(d.gpu_choices) or 'no devices'} are free"
            )
        return short

    def _room(self, usage: Usage, d: Demand) -> tuple[int, int, int, int]:
        """How much of each resource `d` cares about is available now."""
        free_cores = sum(1 for c in self.capacity.cores if usage.core_milli[c] == 0)
        cpu = (
            free_cores
            if d.pinned
            else sum(
                MILLI - usage.core_milli[c] for c in self.capacity.cores if c not in usage.pinned
            )
        )
        gpus = sum(1 for g in d.gpu_choices if g not in usage.gpus)
        return (
            cpu,
            self.capacity.ram_bytes - usage.ram_bytes,
            self.capacity.disk_bytes - usage.disk_bytes,
            gpus,
        )

    @staticmethod
    def _need(d: Demand) -> tuple[int, int, int, int]:
        return (int(d.cpu) if d.pinned else d.cpu_milli, d.ram_bytes, d.disk_bytes, d.gpus)

    # -- admission -----------------------------------------------------------

    def full_environments(self, active: Sequence[Claim]) -> set[str]:
        """Environments whose every slot is taken by a running job."""
        slots = Counter(job.environment for job in active)
        full = set()
        for env_id, count in slots.items():
            env = self._environment(env_id)
            if env is not None and count >= env.max_jobs:
                full.add(env_id)
        return full

    def plan(
        self, active: Sequence[Claim], waiting: Sequence[Claim]
    ) -> list[tuple[str, Allocation]]:
        """Which waiting jobs (oldest first) to admit now, and what each gets."""
        usage = Usage.of(self.held(job) for job in active)
        slots = Counter(job.environment for job in active)
        admitted: list[tuple[str, Allocation]] = []
        reserved: Demand | None = None
        # A demand that did not fit will not fit later in this plan (use only grows): a
        # long queue of alike jobs costs one fit, not one each.
        refused: set[Demand] = set()
        for job in waiting:
            env = self._environment(job.environment)
            if env is None:  # no longer configured: admitted to be ended by the pipeline
                admitted.append((job.job_id, Allocation(cpu=0.001, ram_bytes=1, disk_bytes=0)))
                continue
            if slots[env.id] >= env.max_jobs:
                continue  # waits for its own environment, not for the pool
            d = self.demand(env, job.resources)
            allocation = None if d in refused else self.fit(usage, d)
            if allocation is None:
                refused.add(d)
                reserved = reserved or d
                continue
            if reserved is not None and not self._leaves_room(usage, allocation, reserved):
                continue
            admitted.append((job.job_id, allocation))
            usage.add(allocation)
            slots[env.id] += 1
        return admitted

    def _leaves_room(self, usage: Usage, allocation: Allocation, reserved: Demand) -> bool:
        """Whether taking `allocation` leaves the reserved job as much as it needs of
        each resource as it has now."""
        before = self._room(usage, reserved)
        after_usage = usage.copy()
        after_usage.add(allocation)
        after = self._room(after_usage, reserved)
        need = self._need(reserved)
        return all(a >= min(b, n) for a, b, n in zip(after, before, need, strict=True))

    # -- start-up ------------------------------------------------------------

    def check(self, environments: Sequence[EnvironmentSettings]) -> list[str]:
        """ConfigError unless one job of each environment fits the pool alone.

        Environments whose jobs cannot all run at once are accepted: their jobs wait for
        each other, and the reservation keeps a big job from starving behind small ones.
        Returned: one line per pair of environments whose two jobs do not fit together,
        naming the resources they contend for."""
        empty = Usage.of([])
        alone: list[Allocation] = []
        for env in environments:
            d = self.demand(env)
            allocation = self.fit(empty, d)
            if allocation is None:
                raise ConfigError(
                    f"environment {env.id!r} cannot run one job: {self.shortage(empty, d)} "
                    f"(pool: {self.capacity.describe()}). "
                    "Lower the environment's amounts, or give the pool more in [pool]."
                )
            alone.append(allocation)
        contentions: list[str] = []
        pairs = itertools.combinations(zip(environments, alone, strict=True), 2)
        for (first, held), (second, _) in pairs:
            short = self.shortages(Usage.of([held]), self.demand(second))
            if short:
                resources = " and ".join(s.partition(":")[0] for s in short)
                contentions.append(
                    f"environments {first.id!r} and {second.id!r} contend for {resources}: "
                    "one job of each does not fit the pool at once, so they wait for each other"
                )
        return contentions

    def in_use(self, active: Iterable[Claim]) -> dict[str, float]:
        """What the running jobs hold: cores (CPU amount), RAM and disk in GiB, GPUs."""
        usage = Usage.of(self.held(job) for job in active)
        return {
            "cpu": usage.cpu_milli / MILLI,
            "ram": usage.ram_bytes / GIB,
            "disk": usage.disk_bytes / GIB,
            "gpu": float(len(usage.gpus)),
        }
