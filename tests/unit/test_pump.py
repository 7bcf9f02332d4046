"""A blocking stream pumped into an async one: order, batches, a bounded buffer, errors."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Callable, Iterator

import pytest

from localcompute.runtime.pump import pumped


async def in_thread(pump: Callable[[], None]) -> None:
    await asyncio.to_thread(pump)


async def test_every_chunk_arrives_in_order_in_batches() -> None:
    chunks = [f"line {i}\n".encode() for i in range(10_000)]

    batches = [b async for b in pumped(lambda: iter(chunks), in_thread)]

    assert b"".join(batches) == b"".join(chunks)
    assert len(batches) < len(chunks), "a flood of lines arrives in batches"


async def test_a_slow_consumer_holds_the_pump_within_the_buffer() -> None:
    produced = [0]

    def stream() -> Iterator[bytes]:
        for _ in range(1000):
            produced[0] += 1
            yield b"x" * 100

    consumed = 0
    async for batch in pumped(stream, in_thread, buffer_bytes=1000):
        consumed += len(batch)
        # Never more than the buffer (plus the one chunk the pump holds) ahead of us.
        assert produced[0] * 100 - consumed <= 1000 + 100
        await asyncio.sleep(0.001)
    assert consumed == 100_000


async def test_the_streams_error_surfaces_after_what_came_before() -> None:
    def stream() -> Iterator[bytes]:
        yield b"before\n"
        raise OSError("the engine hung up")

    got = []
    with pytest.raises(OSError, match="hung up"):
        async for batch in pumped(stream, in_thread):
            got.append(batch)
    assert got == [b"before\n"]


async def test_a_consumer_that_leaves_releases_the_pump() -> None:
    pump_returned = threading.Event()

    def endless() -> Iterator[bytes]:
        while True:
            yield b"y" * 1000

    async def tracked(pump: Callable[[], None]) -> None:
        def run() -> None:
            try:
                pump()
            finally:
                pump_returned.set()

        await asyncio.to_thread(run)

    stream = pumped(endless, tracked, buffer_bytes=10_000)
    assert await anext(stream)
    await asyncio.sleep(0.2)  # the pump fills the buffer and waits for room
    await stream.aclose()

    # The pump, blocked on a full buffer of an endless stream, sees it is abandoned.
    assert await asyncio.to_thread(pump_returned.wait, 5)


async def test_a_stream_that_cannot_be_opened_ends_with_its_error() -> None:
    # The engine refused the connection (it is restarting): the follower must hear so at
    # once, not wait for a stream that will never come.
    def refused() -> Iterator[bytes]:
        raise ConnectionRefusedError("the engine does not answer")

    with pytest.raises(ConnectionRefusedError, match="does not answer"):
        async with asyncio.timeout(5):
            async for _ in pumped(refused, in_thread):
                pass


async def test_a_consumer_that_leaves_after_the_stream_failed_leaves_no_error_unheard() -> None:
    unheard: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: unheard.append(context))

    def failing() -> Iterator[bytes]:
        yield b"first\n"
        raise OSError("the engine hung up")

    stream = pumped(failing, in_thread)
    assert await anext(stream) == b"first\n"
    await asyncio.sleep(0.1)  # the pump has failed meanwhile
    await stream.aclose()  # the follower leaves without reading on
    del stream
    gc.collect()
    await asyncio.sleep(0)

    assert unheard == [], "a pump's error was left for the garbage collector to report"
