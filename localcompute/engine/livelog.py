"""An algorithm's output as it comes: written to algorithm.log, followed by any number of readers.

The recorder copies the container's log stream into the job's algorithm.log as it
arrives, within the log cap (a marker says where it was cut; the stream is still
drained, so the container never blocks on its output). Readers follow the file,
not a buffer: one that attaches late gets what was written so far and then the
live tail, and a slow one costs a file handle and one chunk, never a growing queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import BinaryIO

from localcompute.runtime.logfile import TRUNCATION_MARKER, open_regular

READ_CHUNK = 64 * 1024


class LiveLog:
    def __init__(self, path: Path, limit: int, out: BinaryIO) -> None:
        self.path = path
        self.limit = limit
        self.written = 0
        self.finished = False
        self._out = out
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

    async def record(self, chunks: AsyncIterator[bytes]) -> None:
        """Write `chunks` to the log as they come; the log is finished when they end."""
        out = self._out
        try:
            capped = False
            async for chunk in chunks:
                room = self.limit - self.written
                if room <= 0:
                    if not capped:  # drain the rest, keep none of it
                        await asyncio.to_thread(_write, out, TRUNCATION_MARKER % self.limit)
                        capped = True
                        self._notify()
                    continue
                await asyncio.to_thread(_write, out, chunk[:room])
                self.written += min(len(chunk), room)
                self._notify()
        finally:
            await self.close()

    async def follow(self) -> AsyncGenerator[bytes, None]:
        """Everything written so far, then each new piece, until the algorithm ends."""
        source: BinaryIO = await asyncio.to_thread(self.path.open, "rb")
        try:
            while True:
                changed, finished = self._changed, self.finished  # before reading: no lost wake-up
                data = await asyncio.to_thread(source.read, READ_CHUNK)
                if data:
                    yield data
                elif finished:
                    return
                else:
                    await changed.wait()
        finally:
            await asyncio.to_thread(source.close)


def _write(out: BinaryIO, data: bytes) -> None:
    out.write(data)
    out.flush()


def move_log(live: Path, dest: Path) -> None:
    """Append the finished live log to `dest` (after whatever the algorithm wrote there
    itself), never through a link it planted, then remove the live copy."""
    with live.open("rb") as source, open_regular(dest, append=True) as out:
        while chunk := source.read(READ_CHUNK):
            out.write(chunk)
    live.unlink()
