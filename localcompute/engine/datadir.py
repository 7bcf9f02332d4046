"""One engine per data folder: an exclusive lock held as long as the engine runs.

Two engines on one folder would both re-attach and drive the same jobs. The lock is
flock(2) on data_dir/lock, so it goes with the process however it ends; the file
says which process holds it, for the refusal to name.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from localcompute.core.errors import ConfigError

LOCK_FILE = "lock"


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"<DataDirLock {self.path} {'held' if self._fd is not None else 'free'}>"

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the folder, or ConfigError naming the process that has it."""
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise ConfigError(f"data_dir {folder} is not usable: {e.strerror or e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise ConfigError(
                f"data_dir {folder} is in use by process {holder}: stop that server, "
                "or give this one another data_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None
