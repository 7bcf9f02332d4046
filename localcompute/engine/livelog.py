"""An algorithm's output as it comes: written to algorithm.log, followed by any number of readers.

The recorder copies the container's log stream into a log file as it arrives,
within the log cap (a marker says where it was cut; the stream is still drained, so
the container never blocks on its output), and keeps the same capped bytes in
memory. Readers follow that one shared buffer by offset: one that attaches late
gets everything so far and then the live tail, a slow one only falls behind, and
no reader adds a queue or a thread hop: the memory is the cap per running job,
however many read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import BinaryIO

from localcompute.runtime.logfile import TRUNCATION_MARKER, open_regular

log = logging.getLogger(__name__)

READ_CHUNK = 64 * 1024


class LiveLog:
    def __init__(self, path: Path, limit: int, out: BinaryIO) -> None:
        self.path = path
        self.limit = limit
        self.written = 0
        self.finished = False
        self._out = out
        self._data = bytearray()  # what the file holds, for the readers
        self._changed = asyncio.Event()

    @classmethod
    async def create(cls, path: Path, limit: int) -> LiveLog:
        """The log, emptied: a re-attached job's output streams again from its start."""
        return cls(path, limit, await asyncio.to_thread(open_regular, path, append=False))

    def __repr__(self) -> str:
        return f"<LiveLog {self.path} {self.written} bytes{' finished' if self.finished else ''}>"

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def close(self) -> None:
        """The log is complete (or will get no more): readers reach its end and stop."""
        if not self.finished:
            self.finished = True
            await asyncio.to_thread(self._out.close)
            self._notify()

    async def catch_up(self, complete: bytes) -> None:
        """`complete` is the whole capped log, read after the exit: add what the stream
        missed. (Should the two disagree, the readers keep what they were given.)"""
        have = len(self._data)
        if len(complete) > have and complete.startswith(self._data):
            await self._append(self._out, complete[have:])

    async def record(self, chunks: AsyncIterator[bytes]) -> None:
        """Write `chunks` to the log as they come; `close` finishes it."""
        out = self._out
        try:
            capped = False
            async for chunk in chunks:
                room = self.limit - self.written
                if room <= 0:
                    if not capped:  # drain the rest, keep none of it
                        await self._append(out, TRUNCATION_MARKER % self.limit)
                        capped = True
                    continue
                await self._append(out, chunk[:room])
                self.written += min(len(chunk), room)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A broken stream ends the live part; the complete log still follows.
            log.warning("the live log %s ended early", self.path, exc_info=True)

    async def _append(self, out: BinaryIO, data: bytes) -> None:
        await asyncio.to_thread(_write, out, data)
        self._data += data
        self._notify()

    async def follow(self) -> AsyncGenerator[bytes, None]:
        """Everything written so far, then each new piece, until the algorithm ends."""
        offset = 0
        while True:
            changed, finished = self._changed, self.finished  # before reading: no lost wake-up
            if offset < len(self._data):
                data = bytes(self._data[offset : offset + READ_CHUNK])
                offset += len(data)
                yield data
            elif finished:
                return
            else:
                await changed.wait()


def _write(out: BinaryIO, data: bytes) -> None:
    out.write(data)
    out.flush()


def move_log(live: Path, written: Path, dest: Path, limit: int) -> None:
    """Make `dest`, the published algorithm.log: what the algorithm wrote to its own
    algorithm.log (`written`, at most `limit` bytes, read only if it is a regular file,
    never through a link it planted), then its captured output; the live copy goes."""
    with open_regular(dest, append=False) as out:
        own = _open_own(written)
        if own is not None:
            with own:
                out.write(own.read(limit))
        with live.open("rb") as source:
            while chunk := source.read(READ_CHUNK):
                out.write(chunk)
    live.unlink()


def _open_own(path: Path) -> BinaryIO | None:
    """`path` for reading if it is a regular file; None for a link, a FIFO or nothing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb")
