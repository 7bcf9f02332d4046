"""A blocking byte stream (docker-py's followed logs) as an async one, in batches.

A daemon thread pumps the stream into a buffer of at most BUFFER_BYTES (the pump
waits while it is full, so a slow consumer holds the pump, never the server's
memory) and wakes the loop, which takes all that is there at once: a flood of
short lines costs one hop per batch, not one per line.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator

# How much of a stream may wait for a slow consumer.
BUFFER_BYTES = 1024 * 1024


async def pumped(
    open_stream: Callable[[], Iterator[bytes]],
    run_blocking: Callable[[Callable[[], None]], Awaitable[None]],
    *,
    buffer_bytes: int = BUFFER_BYTES,
) -> AsyncGenerator[bytes, None]:
    """Batches of `open_stream()`'s chunks, in order; `run_blocking` runs the pump off
    the loop (and turns its errors into localcompute's), which surface at the end."""
    loop = asyncio.get_running_loop()
    pending: collections.deque[bytes] = collections.deque()
    buffered = [0]  # bytes in pending; guarded by `room`
    room = threading.Condition()
    ready = asyncio.Event()
    abandoned = threading.Event()
    ended = threading.Event()

    def wake() -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody reads
            loop.call_soon_threadsafe(ready.set)

    def pump() -> None:
        stream: Iterator[bytes] | None = None
        try:
            # Inside the try: a stream that cannot even be opened (the engine refuses the
            # connection) must still end the iteration, which then raises its error.
            stream = open_stream()
            for chunk in stream:
                with room:
                    while buffered[0] >= buffer_bytes:
                        if abandoned.is_set():
                            return
                        room.wait(timeout=1)
                    if abandoned.is_set():
                        return
                    pending.append(chunk)
                    buffered[0] += len(chunk)
                wake()
        finally:
            # A stream cut off midway (the engine died) still holds its socket.
            close = getattr(stream, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
            ended.set()
            wake()

    task = asyncio.ensure_future(run_blocking(pump))
    try:
        while True:
            await ready.wait()
            ready.clear()
            with room:
                batch = b"".join(pending)
                pending.clear()
                buffered[0] = 0
                room.notify_all()
            if batch:
                yield batch
            if ended.is_set() and not pending:
                break
        await task  # the stream's error, if it failed
    finally:
        abandoned.set()
        with room:
            room.notify_all()
        _settle(task)


def _settle(task: asyncio.Future[None]) -> None:
    """The pump's task once its consumer has gone: cancelled if it still runs; if it
    failed, its error is taken, since nobody else will read it (the consumer left before
    the end, or raises its own), and unread it would be reported at garbage collection."""
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()
