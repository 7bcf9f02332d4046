"""What the pool counts in: a node's capacity, a job's demand, what running jobs hold;
and cpuset lists. Pure values, no I/O."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from localcompute.core.models import Allocation

GIB = 1024**3
MILLI = 1000  # CPU is counted in thousandths of a core


@dataclass(frozen=True)
class Capacity:
    """What one node offers the pool: measured there, capped by [pool]."""

    cores: tuple[int, ...]
    ram_bytes: int
    disk_bytes: int
    gpus: tuple[str, ...]
    node: str = ""  # the runtime's name for it; "": the server's own host
    labels: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    cpu_model: str = field(default="", compare=False)

    def describe(self) -> str:
        gpus = f", GPUs {', '.join(self.gpus)}" if self.gpus else ""
        where = f"node {self.node}: " if self.node else ""
        return (
            f"{where}{len(self.cores)} cores ({cpuset_text(self.cores)}), "
            f"{self.ram_bytes / GIB:.1f} GiB RAM, {self.disk_bytes / GIB:.1f} GiB disk{gpus}"
        )

    def serves(self, node_label: str) -> bool:
        """Whether this node has the label an environment names ("key=value" or "key")."""
        if not node_label:
            return True
        key, eq, value = node_label.partition("=")
        return key in self.labels and (not eq or self.labels[key] == value)


@dataclass(frozen=True)
class Demand:
    """What one job needs of the pool."""

    cpu: float
    pinned: bool
    ram_bytes: int
    disk_bytes: int
    gpus: int
    gpu_choices: tuple[str, ...]  # the devices its environment may give; (): the node's
    node_label: str = ""  # the label a node must have to run it

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
