"""A container's output into a log file: capped, and never written through a link.

The log folder is one a job container can write to, so whatever runtime copies a
container's output uses this: a symlink or FIFO planted at the log's path is
replaced by a plain file, and a log over the limit ends with a marker.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

TRUNCATION_MARKER = b"\n[localcompute: log truncated at %d bytes]\n"


def write_capped(chunks: Iterable[bytes], path: Path, *, limit: int, append: bool) -> int:
    """Write `chunks` to `path`, at most `limit` bytes of them; returns how many."""
    written = 0
    with open_regular(path, append=append) as out:
        for chunk in chunks:
            room = limit - written
            if room <= 0:
                out.write(TRUNCATION_MARKER % limit)
                break
            out.write(chunk[:room])
            written += min(len(chunk), room)
    return written


def open_regular(path: Path, *, append: bool) -> Any:
    """Open `path` for writing as a regular file of ours, never through a link.

    A job container can write to the folder of `path`: a symlink it planted there
    (to a host file, say) or a FIFO is removed and replaced by a plain file.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    flags |= os.O_APPEND if append else os.O_TRUNC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        # ELOOP: a symlink; ENXIO: a FIFO nobody reads (O_NONBLOCK will not wait for one).
        if e.errno not in (errno.ELOOP, errno.ENXIO):
            raise
        fd = -1
    if fd >= 0 and stat.S_ISREG(os.fstat(fd).st_mode):
        return os.fdopen(fd, "ab" if append else "wb")
    if fd >= 0:
        os.close(fd)
    path.unlink()
    fd = os.open(path, flags | os.O_EXCL, 0o644)
    return os.fdopen(fd, "wb")
