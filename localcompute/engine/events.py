"""The job events as they are written, followed by any number of streams.

The store writes an event with every status change (store/queries.py's triggers); the
feed reads each new batch once, after the store says it wrote, into a window of the
latest events in memory. A stream follows that one window by id, so a thousand open
streams cost one query per batch, not a thousand. A stream that asks for events older
than the window (a reconnect with an old Last-Event-ID, a slow reader that fell out of
it) reads them from the store, then joins the window; one that asks for events the
store no longer keeps, or for ids it never wrote (another server's), is told so once
(`Gap`) and carries on from now: it must read the jobs' states afresh.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from localcompute.core.events import JobEvent
from localcompute.store import Store

log = logging.getLogger(__name__)

WINDOW = 4096  # events kept in memory for the streams
KEEP = 100_000  # events kept in the store: a reconnect within them misses nothing
PAGE = 500  # events read from the store at a time


@dataclass(frozen=True)
class Gap:
    """Events after `after` are gone (pruned) or were never this store's: the stream
    goes on from `resumed`, the last event now."""

    after: int
    resumed: int


class EventFeed:
    def __init__(self, store: Store, *, window: int = WINDOW, keep: int = KEEP) -> None:
        self._store = store
        self._window: list[JobEvent] = []  # in id order; trimmed to `window` when twice that
        self._size = window
        self._keep = keep
        self._last = 0  # the last event read from the store
        self._floor = 0  # the window holds the events after this id
        self._written = asyncio.Event()  # the store wrote: read what is new
        self._changed = asyncio.Event()  # the window grew: streams read on
        self._closed = False

    def __repr__(self) -> str:
        return f"<EventFeed last={self._last} window={len(self._window)}>"

    @property
    def last_id(self) -> int:
        return self._last

    async def open(self) -> None:
        """Start from the store's last event; every write after it is read."""
        _, self._last = await self._store.event_range()
        self._floor = self._last
        self._window.clear()
        self._closed = False
        self._store.on_events(self._written.set)

    def close(self) -> None:
        """Every stream ends (the server is stopping)."""
        self._closed = True
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def read_forever(self) -> None:
        """Read each batch of new events into the window, as the store writes them."""
        while not self._closed:
            await self._written.wait()
            self._written.clear()
            try:
                await self.read_new()
            except Exception:
                # A store error here (it is closing, the disk is failing) must not end
                # the feed: the next write tries again, and streams read the store.
                log.warning("the event feed could not read the store", exc_info=True)
                await asyncio.sleep(0.5)

    async def read_new(self) -> None:
        """Read what the store wrote since the last read (all of it, page by page)."""
        while True:
            events = await self._store.events_after(self._last, limit=PAGE)
            if not events:
                return
            self._window.extend(events)
            if len(self._window) >= 2 * self._size:  # trimmed now and then, not per event
                self._floor = self._window[-self._size - 1].id
                del self._window[: -self._size]
            before, self._last = self._last, events[-1].id
            self._notify()
            if self._last // self._keep != before // self._keep:
                # Once every `keep` events: the store keeps the last `keep` of them.
                await self._store.prune_events(self._last - self._keep)
            if len(events) < PAGE:
                return

    async def follow(
        self, after: int | None = None, *, owner: str | None = None
    ) -> AsyncGenerator[JobEvent | Gap, None]:
        """The events after id `after` (None: from now), then each new one as it comes,
        until the feed closes; only `owner`'s (any case) when given."""
        async with contextlib.aclosing(self.batches(after, owner=owner)) as batches:
            async for batch in batches:
                if isinstance(batch, Gap):
                    yield batch
                else:
                    for event in batch:
                        yield event

    async def batches(
        self, after: int | None = None, *, owner: str | None = None
    ) -> AsyncGenerator[list[JobEvent] | Gap, None]:
        """`follow`'s events as they come, a batch at a time: every event the store wrote
        since the stream last looked, so a thousand streams cost a thousand wake-ups per
        batch, not per event. A batch is never empty."""
        position = self._last if after is None else after
        if position > self._last:
            # An id this store never wrote: the client knew another server (or a data
            # folder since removed). It must read afresh.
            yield Gap(position, self._last)
            position = self._last
        wanted = None if owner is None else owner.lower()
        while not self._closed:
            changed = self._changed
            if position < self._floor:
                replayed = await self._replay(position, owner)
                if isinstance(replayed, Gap):
                    yield replayed
                    position = replayed.resumed
                    continue
                events, position = replayed
                if events:
                    yield events
                continue
            start = bisect.bisect_right(self._window, position, key=_event_id)
            newer = self._window[start:]
            if not newer:
                await changed.wait()
                continue
            position = newer[-1].id
            if wanted is not None:
                newer = [e for e in newer if e.owner.lower() == wanted]
            if newer:
                yield newer

    async def _replay(self, position: int, owner: str | None) -> tuple[list[JobEvent], int] | Gap:
        """The stored events after `position` (a page, up to where the window starts) and
        where the stream is after them; a Gap when the store no longer has them all."""
        first, _ = await self._store.event_range()
        # Ids have no holes (AUTOINCREMENT rolls back with its transaction): only pruning
        # removes events, the oldest ones.
        if first > position + 1:
            return Gap(position, self._last)
        floor = self._floor
        events = await self._store.events_after(position, owner=owner, limit=PAGE)
        if len(events) == PAGE and events[-1].id <= floor:
            return events, events[-1].id
        return [e for e in events if e.id <= floor], floor


def _event_id(event: JobEvent) -> int:
    return event.id
