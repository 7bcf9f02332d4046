"""An algorithm's output followed live: late readers, the cap, the end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from localcompute.engine.livelog import LiveLog
from localcompute.runtime.logfile import TRUNCATION_MARKER


class Source:
    """Chunks handed over one at a time by the test, as a container would write them."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def chunks(self) -> AsyncIterator[bytes]:
        while (chunk := await self.queue.get()) is not None:
            yield chunk


async def collect(live: LiveLog) -> bytes:
    return b"".join([chunk async for chunk in live.follow()])


async def test_readers_early_and_late_get_everything_and_end_with_the_algorithm(
    tmp_path: Path,
) -> None:
    source = Source()
    live = await LiveLog.create(tmp_path / "algorithm.log", limit=1000)
    recorder = asyncio.create_task(live.record(source.chunks()))
    early = asyncio.create_task(collect(live))
    await source.queue.put(b"line 1\n")
    await asyncio.sleep(0.05)
    late = asyncio.create_task(collect(live))  # attaches after the first line
    await source.queue.put(b"line 2\n")
    await source.queue.put(None)  # the algorithm exits

    await recorder
    await live.close()
    assert await early == await late == b"line 1\nline 2\n"
    assert (tmp_path / "algorithm.log").read_bytes() == b"line 1\nline 2\n"


async def test_a_reader_sees_a_line_before_the_algorithm_ends(tmp_path: Path) -> None:
    source = Source()
    live = await LiveLog.create(tmp_path / "algorithm.log", limit=1000)
    recorder = asyncio.create_task(live.record(source.chunks()))
    reader = live.follow()
    await source.queue.put(b"first\n")

    assert await asyncio.wait_for(anext(reader), 2) == b"first\n"
    assert not live.finished
    await source.queue.put(None)
    await recorder
    await live.close()
    await reader.aclose()


async def test_output_over_the_cap_is_cut_with_a_marker_and_still_drained(
    tmp_path: Path,
) -> None:
    source = Source()
    live = await LiveLog.create(tmp_path / "algorithm.log", limit=10)
    recorder = asyncio.create_task(live.record(source.chunks()))
    for _ in range(100):
        await source.queue.put(b"0123456789abcdef")
    await source.queue.put(None)

    await recorder
    await live.close()
    assert source.queue.empty(), "the stream was drained to its end"
    assert await collect(live) == b"0123456789" + TRUNCATION_MARKER % 10


async def test_what_the_stream_missed_is_added_from_the_complete_log(tmp_path: Path) -> None:
    # Docker's follow can end before a fast container's last lines reach it.
    source = Source()
    live = await LiveLog.create(tmp_path / "algorithm.log", limit=1000)
    recorder = asyncio.create_task(live.record(source.chunks()))
    reader = asyncio.create_task(collect(live))
    await source.queue.put(b"first\n")
    await source.queue.put(None)
    await recorder

    await live.catch_up(b"first\nlast\n")
    await live.close()

    assert await reader == b"first\nlast\n"
    assert (tmp_path / "algorithm.log").read_bytes() == b"first\nlast\n"
