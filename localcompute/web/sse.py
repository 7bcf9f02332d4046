"""Job events as Server-Sent Events: the dashboard's stream and a consumer's own.

Each event is `id: N`, `event: status` and its JSON (core/events.py), so a browser's
EventSource resumes with Last-Event-ID after a drop or a server restart and misses
nothing the store still keeps. A stream opens with `event: ready` (the last id now:
read the jobs' states after it and nothing falls between), says `event: gap` when
events it asked for are gone (read the states afresh), and sends a comment every
`HEARTBEAT` seconds: proxies keep it open, and a reader that left is noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator
from typing import Any

from aiohttp import web

from localcompute.core.errors import RequestValidationError
from localcompute.core.events import JobEvent
from localcompute.engine.events import Gap
from localcompute.web.context import ENGINE

HEARTBEAT = 15.0
RETRY_MS = 1000  # how soon a browser reconnects


def last_event_id(request: web.Request, sent: str | None = None) -> int | None:
    """Where the stream resumes: the Last-Event-ID header (a browser's reconnect), else
    the id the client sent as a parameter; None: from now."""
    raw = request.headers.get("Last-Event-ID") or sent
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 19:
        raise RequestValidationError({"Last-Event-ID": [f"{raw[:40]!r} is not an event id"]})
    return int(raw)


def frame(kind: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    return _frame(kind, json.dumps(data, separators=(",", ":")), event_id)


def _frame(kind: str, data: str, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {data}\n\n".encode()


def encoded(batch: list[JobEvent] | Gap) -> bytes:
    """A batch of the feed as one write."""
    if isinstance(batch, Gap):
        return frame("gap", {"after": batch.after, "resumed": batch.resumed})
    return b"".join(_frame("status", e.view_json, e.id) for e in batch)


async def stream_events(
    request: web.Request,
    batches: AsyncGenerator[list[JobEvent] | Gap, None],
    *,
    last_id: int,
    kind: str,
    heartbeat: float | None = None,
) -> web.StreamResponse:
    """Send the feed's `batches` until they end (the server stops) or the reader goes;
    `kind` labels the open-streams gauge (dashboard, consumer).

    Between batches a heartbeat writes a comment; when that fails (the reader left while
    nothing happened) it cancels this stream, which then ends as if the write had failed.
    """
    period = HEARTBEAT if heartbeat is None else heartbeat
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # a proxy in front must not hold events back
        }
    )
    await response.prepare(request)
    lock = asyncio.Lock()  # one write at a time: the heartbeat writes between batches
    streaming = asyncio.current_task()
    gone = False

    async def send(data: bytes) -> None:
        async with lock:
            await response.write(data)

    async def beat() -> None:
        nonlocal gone
        while True:
            await asyncio.sleep(period)
            try:
                await send(b": keepalive\n\n")
            except ConnectionError:
                gone = True
                if streaming is not None:
                    streaming.cancel()
                return

    gauge = request.app[ENGINE].metrics.event_streams.labels(kind)
    gauge.inc()
    beating = asyncio.ensure_future(beat())
    try:
        await send(f"retry: {RETRY_MS}\n\n".encode() + frame("ready", {"lastEventId": last_id}))
        async with contextlib.aclosing(batches):
            async for batch in batches:
                await send(encoded(batch))
    except ConnectionError:
        pass  # the reader left: its stream ends here
    except asyncio.CancelledError:
        if not gone or streaming is None:
            raise  # the server is stopping, or the request was cancelled: not ours
        streaming.uncancel()
    finally:
        gauge.dec()
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
    return response


async def stream_feed(
    request: web.Request, after: int | None, *, owner: str | None = None, kind: str
) -> web.StreamResponse:
    """The engine's events after `after` (None: from now), `owner`'s only if given."""
    feed = request.app[ENGINE].events
    last = feed.last_id  # what `ready` says, and where a stream from now starts: the same id
    start = last if after is None else after
    return await stream_events(request, feed.batches(start, owner=owner), last_id=last, kind=kind)
