"""A job's disk under Swarm: its volumes on the node, which no quota of the server's host
can limit. Soft, like the local engine's watcher: the manager cannot see a node's disk, so
a meter task on the node measures the job's volumes every half second (the runtime reads
its log), and the engine stops a job past its limit; the server also refuses an upload
past the job's disk (engine/stage_files.py). Releasing the job's disk is where its
services, containers, volumes and network go (SwarmRuntime.release_job).

On the server's host the job keeps an empty data folder: the sign, after a crash, of a
job whose volumes may still be on its node (`held`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from localcompute.runtime.folders import remove_tree
from localcompute.runtime.quota import Mechanism


@dataclass(frozen=True)
class SwarmQuota:
    # The job's id, and what to do once everything of it on the cluster is gone.
    release: Callable[[str, Callable[[], None]], None]
    # The job's id → the bytes its volumes hold, as its meter on the node last said.
    usage: Callable[[str], int | None] = lambda job_id: None
    mechanism: Mechanism = "volumes"
    hard: bool = False
    keeps_renamed: bool = False  # the filter's results travel by HTTP: nothing is renamed

    def attach(self, folder: Path, limit: int, key: str) -> None:
        remove_tree(folder)
        folder.mkdir(parents=True)

    def reattach(self, folder: Path, key: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)

    def detach(self, folder: Path, key: str) -> None:
        self.release(key, lambda: remove_tree(folder))

    def full(self, folder: Path, limit: int) -> bool:
        used = self.usage(folder.parent.name)  # folder: <data_dir>/jobs/<job>/data
        return used is not None and used > limit

    @staticmethod
    def held(jobs_dir: Path) -> list[Path]:
        if not jobs_dir.is_dir():
            return []
        return [p / "data" for p in jobs_dir.iterdir() if (p / "data").is_dir()]
