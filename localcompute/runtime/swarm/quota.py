"""A job's disk under Swarm: its volumes on the node, which no quota of the server's host
can limit. Soft, and weaker than the local engine's watcher: the volumes are not measured
while the job runs (the manager cannot see a node's disk); the server refuses an upload
past the job's disk (engine/stage_files.py). Releasing the job's disk is where its
services, containers, volumes and network go (SwarmRuntime.release_job).

On the server's host the job keeps an empty data folder: the sign, after a crash, of a
job whose volumes may still be on its node (`held`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from localcompute.runtime.quota import Mechanism, remove_tree


@dataclass(frozen=True)
class SwarmQuota:
    # The job's id, and what to do once everything of it on the cluster is gone.
    release: Callable[[str, Callable[[], None]], None]
    mechanism: Mechanism = "volumes"
    hard: bool = False

    def attach(self, folder: Path, limit: int, key: str) -> None:
        remove_tree(folder)
        folder.mkdir(parents=True)

    def reattach(self, folder: Path, key: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)

    def detach(self, folder: Path, key: str) -> None:
        self.release(key, lambda: remove_tree(folder))

    def full(self, folder: Path, limit: int) -> bool:
        return False  # not measurable from here: see the module's docstring

    @staticmethod
    def held(jobs_dir: Path) -> list[Path]:
        if not jobs_dir.is_dir():
            return []
        return [p / "data" for p in jobs_dir.iterdir() if (p / "data").is_dir()]
