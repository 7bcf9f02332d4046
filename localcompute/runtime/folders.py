"""Removing a job's folders, in one place: a container may leave folders its user made
without write permission for anyone else, which the server (another user) can remove
only once it has made them its own again."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path


def remove_tree(path: Path) -> None:
    """`path` gone, whatever it is (a file, a link, a folder) and whatever a container
    left inside it; nothing when it is not there."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        try:
            shutil.rmtree(path)
        except PermissionError:
            _make_owner_writable(path)
            shutil.rmtree(path)


def _make_owner_writable(folder: Path) -> None:
    os.chmod(folder, stat.S_IRWXU)
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                _make_owner_writable(Path(entry.path))
