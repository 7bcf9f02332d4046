"""Job events in the stores and the feed over them: every status change is one event,
written with it, in order, kept over a restart; a stream that asks for events older than
the feed's window reads them from the store, and one asking for pruned ones gets a gap."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from pathlib import Path

from localcompute.core.errors import TransitionRefusedError
from localcompute.core.events import JobEvent
from localcompute.core.status import JobStatus, TerminationReason
from localcompute.engine.events import EventFeed, Gap
from localcompute.store import JobStore, Store
from localcompute.store.memory import MemoryStore
from tests.integration.test_store import insert, pool, spec
from tests.integration.test_store import store as store  # the fixture, run on each store

PIPELINE = [
    JobStatus.JOB_STARTED,
    JobStatus.CONFIGURING_VOLUMES,
    JobStatus.PROVISIONING_SUCCESS,
    JobStatus.RUNNING_ALGORITHM,
    JobStatus.FILTERING_RESULTS,
    JobStatus.PUBLISHING_RESULTS,
]


async def run_one(jobs: Store, environment: str = "env") -> str:
    """A job through every status to 70, as the pipeline moves it."""
    job_id = await insert(jobs, spec(environment))
    [admitted] = await jobs.admit(pool())
    assert admitted.job_id == job_id
    for status in PIPELINE[1:]:
        await jobs.transition(job_id, status)
    await jobs.transition(
        job_id, JobStatus.JOB_COMPLETED, exit_code=3, termination_reason=TerminationReason.FAILED
    )
    return job_id


async def take(events: AsyncGenerator[JobEvent | Gap, None], n: int) -> list[JobEvent | Gap]:
    async with asyncio.timeout(5):
        return [await anext(events) for _ in range(n)]


async def test_each_status_change_is_one_event_in_order(store: Store) -> None:
    job_id = await run_one(store)
    events = await store.events_after(0)
    assert [e.status for e in events] == [JobStatus.WARMING_UP, *PIPELINE, JobStatus.JOB_COMPLETED]
    assert {e.job_id for e in events} == {job_id}
    assert [e.id for e in events] == list(range(1, 9))
    last = events[-1]
    assert (last.exit_code, last.status_text) == (3, "Algorithm failed")
    assert await store.events_after(0, owner="0XABC") == events, "owners compare case-blind"
    assert await store.events_after(0, owner="0xother") == []
    assert await store.events_after(5, limit=2) == events[5:7]


async def test_refused_transitions_and_other_writes_make_no_event(store: Store) -> None:
    job_id = await run_one(store)
    before = await store.events_after(0)
    await store.set_results(job_id, [])
    await store.mark_removed(job_id)
    with contextlib.suppress(TransitionRefusedError):
        await store.transition(job_id, JobStatus.RUNNING_ALGORITHM)
    assert await store.events_after(0) == before


async def test_events_survive_a_restart_and_an_old_id_is_replayed(tmp_path: Path) -> None:
    first = JobStore(tmp_path / "jobs.sqlite")
    await first.open()
    job_id = await run_one(first)
    await first.close()
    reopened = JobStore(tmp_path / "jobs.sqlite")  # the next server
    await reopened.open()
    feed = EventFeed(reopened)
    await feed.open()
    reader = asyncio.ensure_future(feed.read_forever())
    try:
        assert feed.last_id == 8
        # A page that saw event 3 before the restart reconnects: it is sent 4 to 8 from the
        # store (the new feed's window starts after 8), then what happens next, live.
        stream = feed.follow(3)
        replayed = await take(stream, 5)
        assert [e.id for e in replayed if isinstance(e, JobEvent)] == [4, 5, 6, 7, 8]
        second = await run_one(reopened)
        live = await take(stream, 8)
        assert {e.job_id for e in live if isinstance(e, JobEvent)} == {second}
        assert job_id != second
    finally:
        feed.close()
        reader.cancel()
        await reopened.close()


async def test_a_slow_stream_that_fell_out_of_the_window_misses_nothing() -> None:
    memory = MemoryStore()
    feed = EventFeed(memory, window=4)
    await feed.open()
    reader = asyncio.ensure_future(feed.read_forever())
    try:
        stream = feed.follow(0)
        for _ in range(3):  # 24 events: the window (4 to 8 of them) moved far past 0
            await run_one(memory, "env")
        await asyncio.sleep(0)
        got = await take(stream, 24)
        assert [e.id for e in got if isinstance(e, JobEvent)] == list(range(1, 25))
    finally:
        feed.close()
        reader.cancel()


async def test_pruned_events_are_a_gap_then_the_stream_goes_on() -> None:
    memory = MemoryStore()
    feed = EventFeed(memory, window=4, keep=10)
    await feed.open()
    reader = asyncio.ensure_future(feed.read_forever())
    try:
        for _ in range(3):
            await run_one(memory, "env")
        await asyncio.sleep(0.05)
        first, last = await memory.event_range()
        assert first > 1 and last == 24, "the store kept only the last `keep` or so"
        stream = feed.follow(0)
        [gap] = await take(stream, 1)
        assert isinstance(gap, Gap) and (gap.after, gap.resumed) == (0, 24)
        await run_one(memory, "env")
        after = await take(stream, 8)
        assert [e.id for e in after if isinstance(e, JobEvent)] == list(range(25, 33))
    finally:
        feed.close()
        reader.cancel()


async def test_closing_the_feed_ends_every_stream() -> None:
    memory = MemoryStore()
    feed = EventFeed(memory)
    await feed.open()
    stream = feed.follow()
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.01)
    feed.close()
    async with asyncio.timeout(2):
        try:
            await waiting
            raise AssertionError("the stream should have ended")
        except StopAsyncIteration:
            pass
