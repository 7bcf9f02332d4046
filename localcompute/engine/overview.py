"""What the operator's dashboard shows of the whole server now, read in one go.

The environments with their limits and their share of the pool, the queue per
environment and per consumer, the jobs per status, the runtime and the health: each
from the store, the pool and the settings as the other views read them, so the page
and /metrics never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from localcompute.core.settings import EnvironmentSettings
from localcompute.engine.envstate import EnvironmentState
from localcompute.engine.health import Check


@dataclass(frozen=True)
class EnvironmentOverview:
    settings: EnvironmentSettings
    state: EnvironmentState
    running: int  # jobs holding a slot
    cpu_type: str


@dataclass(frozen=True)
class ConsumerQueue:
    owner: str  # lower case
    waiting: int
    running: int


@dataclass(frozen=True)
class Overview:
    environments: list[EnvironmentOverview]
    pool_totals: dict[str, float]  # cpu, ram (GiB), disk (GiB), gpu
    jobs_by_status: list[tuple[str, int, int]]  # environment, status, how many
    consumers: list[ConsumerQueue]
    runtime: str  # [runtime] kind: docker or swarm
    health: dict[str, Check]
    last_event_id: int  # a page that read this follows the events after it
