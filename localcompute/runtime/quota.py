"""How a job's disk is limited, as the engine sees it: the DiskQuota interface, and the
watcher that works on any folder.

The mechanisms the local engine adds (an XFS project quota, a loop-mounted image) are in
runtime/local/disk.py; each runtime chooses its own (ContainerRuntime.disk_quota). Every
function here blocks (it walks folders); the engine calls them off the event loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from localcompute.runtime.folders import remove_tree

Mechanism = Literal["xfs", "loop", "watch", "volumes"]


class DiskQuota(Protocol):
    @property
    def mechanism(self) -> Mechanism: ...
    @property
    def hard(self) -> bool:
        """The kernel enforces it; else the engine watches."""

    @property
    def keeps_renamed(self) -> bool:
        """A file renamed out of the folder still counts against the quota (an XFS
        project's files carry its id): the filter copies the outputs out instead."""

    def attach(self, folder: Path, limit: int, key: str) -> None:
        """Create `folder`, empty, limited to `limit` bytes; `key` names the job."""

    def reattach(self, folder: Path, key: str) -> None:
        """Make an attached folder usable again after a restart (its contents kept)."""

    def detach(self, folder: Path, key: str) -> None:
        """Remove `folder`, its contents and whatever enforced its quota."""

    def full(self, folder: Path, limit: int) -> bool:
        """Whether what was written in `folder` reached `limit`."""


def folder_size(folder: Path, *, one_file_system: bool = False) -> int:
    """Bytes allocated under `folder` (as du counts them), links not followed, each file
    once however many names it has (or has had: one renamed while the walk goes on may be
    met under its new name too); with `one_file_system`, only on `folder`'s own file
    system (du -x): a mounted loop image then counts once, as its file, not again as
    what is mounted from it."""
    try:
        device = folder.stat().st_dev
    except OSError:
        return 0
    total = 0
    seen: set[tuple[int, int]] = set()
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if one_file_system and info.st_dev != device:
                continue
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
    return total


@dataclass(frozen=True)
class WatchQuota:
    """A plain folder whose size is measured while the job runs; a job past its quota is
    stopped. Soft: a fast writer can overshoot by a measure's worth of writes."""

    mechanism: Mechanism = "watch"
    hard: bool = False
    keeps_renamed: bool = False

    def attach(self, folder: Path, limit: int, key: str) -> None:
        remove_tree(folder)
        folder.mkdir(parents=True)

    def reattach(self, folder: Path, key: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)

    def detach(self, folder: Path, key: str) -> None:
        remove_tree(folder)

    def full(self, folder: Path, limit: int) -> bool:
        return folder_size(folder) > limit
