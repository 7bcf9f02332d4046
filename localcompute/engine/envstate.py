"""What the environment views show of each environment's share of the pool now."""

from __future__ import annotations

from dataclasses import dataclass

from localcompute.engine.amounts import GIB, Capacity


@dataclass(frozen=True)
class EnvironmentState:
    in_use: dict[str, float]  # cpu, ram (GiB), disk (GiB), gpu held by its running jobs
    pool_totals: dict[str, float]  # what the whole pool has, in the same units
    unavailable: str | None  # why it cannot run jobs here; None when it can
    disk_quota: str  # xfs, loop or watch
    disk_hard: bool
    queued: int = 0  # its jobs waiting for a slot

    @property
    def disk_limit(self) -> dict[str, object]:
        """How a job's disk is limited, as the environment views show it."""
        return {"mechanism": self.disk_quota, "hard": self.disk_hard}


def pool_totals(capacity: Capacity) -> dict[str, float]:
    """What the whole pool has: cores, RAM and disk in GiB, GPUs."""
    return {
        "cpu": float(len(capacity.cores)),
        "ram": capacity.ram_bytes / GIB,
        "disk": capacity.disk_bytes / GIB,
        "gpu": float(len(capacity.gpus)),
    }
