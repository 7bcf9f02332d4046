"""The resources of the nodes that run jobs as one pool shared by every environment:
pure logic, no I/O. On the local engine there is one node, the server's host; under
Swarm each eligible node is planned on its own, and a job's allocation names its node
(all its stages run there; an environment may name a node label).

A job holds an `Allocation` (cores, a CPU amount, RAM, disk, GPU devices) from
admission until its containers are gone. What is held is always the sum of the
allocations stored with the running jobs, so after a restart the pool is rebuilt
from the store and never counted twice.

CPU is counted per core, in thousandths: a job of whole CPUs takes whole free
cores (pinned, disjoint from every other job); a job of a fraction of a CPU takes
that share of the least used cores that are not pinned, so fractional jobs share
cores only with each other.

Admission offers the waiting jobs whose environment has a free slot in fair turns
between consumers (turns.py; first come, first served without them). The first job
offered that does not fit holds a reservation: a job offered after it is
admitted only if, after it, every resource the blocked job needs is still as
available as before (up to what it needs). So small jobs fill what a big job
cannot use, and never what it waits for. That is also why environments whose jobs
cannot all run at once are accepted (a "whole machine" one beside a "small" one): their
jobs wait for each other, and the start-up log names each pair that contends. With more
than one node a job goes to the eligible node with the most memory free that fits it, and
the reservation holds on each node the blocked job could run on.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

from localcompute.core.errors import ConfigError
from localcompute.core.jobspec import JobResources
from localcompute.core.models import AdmissionView, Allocation, Amounts, held_by
from localcompute.core.settings import EnvironmentSettings
from localcompute.engine.amounts import GIB, MILLI, Capacity, Demand, Usage
from localcompute.engine.turns import FairTurns


class Pool:
    def __init__(
        self,
        nodes: Capacity | Sequence[Capacity],
        environment: Callable[[str], EnvironmentSettings | None],
        turns: FairTurns | None = None,
    ) -> None:
        self.nodes: tuple[Capacity, ...] = (nodes,) if isinstance(nodes, Capacity) else tuple(nodes)
        self._environment = environment
        self.turns = turns

    def __repr__(self) -> str:
        return f"<Pool {'; '.join(n.describe() for n in self.nodes)}>"

    @property
    def capacity(self) -> Capacity:
        """The whole pool: its one node, or the sum of its nodes (cores and GPUs counted,
        named node by node)."""
        if len(self.nodes) == 1:
            return self.nodes[0]
        return Capacity(
            cores=tuple(range(sum(len(n.cores) for n in self.nodes))),
            ram_bytes=sum(n.ram_bytes for n in self.nodes),
            disk_bytes=sum(n.disk_bytes for n in self.nodes),
            gpus=tuple(f"{n.node}:{g}" for n in self.nodes for g in n.gpus),
        )

    def describe(self) -> list[str]:
        return [n.describe() for n in self.nodes]

    # -- demands -----------------------------------------------------------

    def demand(self, env: EnvironmentSettings, wanted: JobResources | None = None) -> Demand:
        """What one job of `env` needs; a request lowers the environment's amounts."""
        amounts = Amounts.of(env, wanted)
        return Demand(
            cpu=amounts.cpu,
            pinned=float(amounts.cpu).is_integer(),
            ram_bytes=amounts.ram_bytes,
            disk_bytes=amounts.disk_bytes,
            gpus=amounts.gpus,
            gpu_choices=tuple(env.gpu_devices),
            node_label=env.node_label,
        )

    def held(self, job: AdmissionView) -> Allocation:
        """What a running job holds (models.held_by)."""
        return held_by(job.allocation, self._environment(job.environment), job.resources)

    def usages(self, allocations: Iterable[Allocation]) -> dict[str, Usage]:
        """What is held on each node. An allocation of no known node counts on the only
        node where there is one (a job admitted before allocations named nodes), and
        nowhere otherwise (its node has left the pool; the job is ended as lost)."""
        by_node = {n.node: Usage.of([]) for n in self.nodes}
        only = self.nodes[0].node if len(self.nodes) == 1 else None
        for allocation in allocations:
            node = allocation.node if allocation.node in by_node else only
            if node is not None:
                by_node[node].add(allocation)
        return by_node

    # -- fitting on one node ---------------------------------------------------

    @staticmethod
    def _choices(cap: Capacity, d: Demand) -> tuple[str, ...]:
        return d.gpu_choices or cap.gpus

    def fit(self, cap: Capacity, usage: Usage, d: Demand) -> Allocation | None:
        """The allocation `d` gets on `cap` with `usage` held, or None when something
        is short."""
        if self.shortages(cap, usage, d):
            return None
        return Allocation(
            cpu=d.cpu,
            cpuset=list(self._cores_for(cap, usage, d) or []),
            ram_bytes=d.ram_bytes,
            disk_bytes=d.disk_bytes,
            gpus=[g for g in self._choices(cap, d) if g not in usage.gpus][: d.gpus],
            node=cap.node,
        )

    @staticmethod
    def _cores_for(cap: Capacity, usage: Usage, d: Demand) -> list[int] | None:
        if d.pinned:
            free = [c for c in cap.cores if usage.core_milli[c] == 0]
            need = int(d.cpu)
            return free[:need] if len(free) >= need else None
        # A fraction spreads over as many cores as it spans, the least used ones first.
        span = max(1, math.ceil(d.cpu))
        share = math.ceil(d.cpu_milli / span)
        open_cores = sorted(
            (c for c in cap.cores if c not in usage.pinned),
            key=lambda c: (usage.core_milli[c], c),
        )
        fitting = [c for c in open_cores if usage.core_milli[c] + share <= MILLI]
        return sorted(fitting[:span]) if len(fitting) >= span else None

    def shortages(self, cap: Capacity, usage: Usage, d: Demand) -> list[str]:
        """Every resource `d` lacks on `cap` with `usage` held, each in words starting
        with its name."""
        short: list[str] = []
        if not cap.serves(d.node_label):
            return [f"node: it lacks the label {d.node_label}"]
        if self._cores_for(cap, usage, d) is None:
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
        choices = self._choices(cap, d)
        free_gpus = [g for g in choices if g not in usage.gpus]
        if len(free_gpus) < d.gpus:
            short.append(
                f"gpu: needs {d.gpus}; {len(free_gpus)} of "
                f"{', '.join(choices) or 'no devices'} are free"
            )
        return short

    def _room(self, cap: Capacity, usage: Usage, d: Demand) -> tuple[int, int, int, int]:
        """How much of each resource `d` cares about is available on `cap` now."""
        free_cores = sum(1 for c in cap.cores if usage.core_milli[c] == 0)
        cpu = (
            free_cores
            if d.pinned
            else sum(MILLI - usage.core_milli[c] for c in cap.cores if c not in usage.pinned)
        )
        gpus = sum(1 for g in self._choices(cap, d) if g not in usage.gpus)
        return (cpu, cap.ram_bytes - usage.ram_bytes, cap.disk_bytes - usage.disk_bytes, gpus)

    @staticmethod
    def _need(d: Demand) -> tuple[int, int, int, int]:
        return (int(d.cpu) if d.pinned else d.cpu_milli, d.ram_bytes, d.disk_bytes, d.gpus)

    def _leaves_room(
        self, cap: Capacity, usage: Usage, allocation: Allocation, reserved: Demand
    ) -> bool:
        """Whether taking `allocation` on `cap` leaves the reserved job as much as it
        needs of each resource there as it has now (a node it cannot run on: always)."""
        if not cap.serves(reserved.node_label):
            return True
        before = self._room(cap, usage, reserved)
        after_usage = usage.copy()
        after_usage.add(allocation)
        after = self._room(cap, after_usage, reserved)
        need = self._need(reserved)
        return all(a >= min(b, n) for a, b, n in zip(after, before, need, strict=True))

    def _by_room(self, usages: Mapping[str, Usage]) -> list[Capacity]:
        """The nodes, the most memory free first: jobs spread over the cluster."""
        return sorted(self.nodes, key=lambda n: usages[n.node].ram_bytes - n.ram_bytes)

    # -- admission -----------------------------------------------------------

    def full_environments(self, active: Sequence[AdmissionView]) -> set[str]:
        """Environments whose every slot is taken by a running job."""
        slots = Counter(job.environment for job in active)
        full = set()
        for env_id, count in slots.items():
            env = self._environment(env_id)
            if env is not None and count >= env.max_jobs:
                full.add(env_id)
        return full

    def plan(
        self, active: Sequence[AdmissionView], waiting: Sequence[AdmissionView]
    ) -> list[tuple[str, Allocation]]:
        """Which waiting jobs to admit now, offered in fair turns (oldest first without
        them), and what each gets where."""
        queue = self.turns.queue(active, waiting) if self.turns is not None else None
        usages = self.usages(self.held(job) for job in active)
        slots = Counter(job.environment for job in active)
        admitted: list[tuple[str, Allocation]] = []
        reserved: Demand | None = None
        # A demand that did not fit will not fit later in this plan (use only grows): a
        # long queue of alike jobs costs one fit, not one each.
        refused: set[Demand] = set()
        demands: dict[tuple[str, JobResources], Demand] = {}  # alike jobs: one demand
        for job in queue if queue is not None else waiting:
            env = self._environment(job.environment)
            if env is None:  # no longer configured: admitted to be ended by the pipeline
                admitted.append((job.job_id, Allocation(cpu=0.001, ram_bytes=1, disk_bytes=0)))
                continue
            if slots[env.id] >= env.max_jobs:
                continue  # waits for its own environment, not for the pool
            d = demands.get((env.id, job.resources))
            if d is None:
                d = demands[env.id, job.resources] = self.demand(env, job.resources)
            if d in refused:
                continue
            fits = [
                (cap, allocation)
                for cap in self._by_room(usages)
                if (allocation := self.fit(cap, usages[cap.node], d)) is not None
            ]
            if not fits:
                refused.add(d)
                reserved = reserved or d
                continue
            for cap, allocation in fits:
                if reserved is None or self._leaves_room(
                    cap, usages[cap.node], allocation, reserved
                ):
                    admitted.append((job.job_id, allocation))
                    usages[cap.node].add(allocation)
                    slots[env.id] += 1
                    if queue is not None:
                        queue.admitted(job, allocation)
                    break
        return admitted

    # -- start-up ------------------------------------------------------------

    def check(self, environments: Sequence[EnvironmentSettings]) -> list[str]:
        """ConfigError unless one job of each environment fits some node alone.

        Environments whose jobs cannot all run at once are accepted: their jobs wait for
        each other, and the reservation keeps a big job from starving behind small ones.
        Returned: one line per pair of environments whose two jobs cannot run at once
        (neither on one node nor on two), naming the resources they contend for."""
        empty = Usage.of([])
        alone: dict[str, list[tuple[Capacity, Allocation]]] = {}
        for env in environments:
            d = self.demand(env)
            fits = [(n, a) for n in self.nodes if (a := self.fit(n, empty, d)) is not None]
            if not fits:
                raise ConfigError(
                    f"environment {env.id!r} cannot run one job: {self._why_not(d)}. "
                    "Lower the environment's amounts, or give the pool more in [pool]."
                )
            alone[env.id] = fits
        contentions: list[str] = []
        for first, second in itertools.combinations(environments, 2):
            short = self._contention(alone[first.id], second)
            if short:
                resources = " and ".join(dict.fromkeys(s.partition(":")[0] for s in short))
                contentions.append(
                    f"environments {first.id!r} and {second.id!r} contend for {resources}: "
                    "one job of each does not fit the pool at once, so they wait for each other"
                )
        return contentions

    def _why_not(self, d: Demand) -> str:
        empty = Usage.of([])
        if len(self.nodes) == 1:
            [cap] = self.nodes
            return f"{self.shortages(cap, empty, d)[0]} (pool: {cap.describe()})"
        return "; ".join(
            f"node {cap.node}: {self.shortages(cap, empty, d)[0]}" for cap in self.nodes
        )

    def _contention(
        self, first: list[tuple[Capacity, Allocation]], second: EnvironmentSettings
    ) -> list[str]:
        """What a job of `second` lacks beside one of the first, wherever that one runs:
        [] when they can run at once somewhere (on one node, or on two)."""
        d = self.demand(second)
        empty = Usage.of([])
        short: list[str] = []
        for cap, held in first:
            for other in self.nodes:
                lacks = self.shortages(
                    other, Usage.of([held]) if other.node == cap.node else empty, d
                )
                if not lacks:
                    return []
                if other.node == cap.node:
                    short.extend(lacks)
        return short

    def in_use(self, active: Iterable[AdmissionView]) -> dict[str, float]:
        """What the running jobs hold: cores (CPU amount), RAM and disk in GiB, GPUs."""
        held = [self.held(job) for job in active]
        usage = Usage.of(held)
        return {
            "cpu": usage.cpu_milli / MILLI,
            "ram": usage.ram_bytes / GIB,
            "disk": usage.disk_bytes / GIB,
            "gpu": float(sum(len(a.gpus) for a in held)),  # names repeat from node to node
        }
