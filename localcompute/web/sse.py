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
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def stream_events(
    request: web.Request,
    events: AsyncGenerator[JobEvent | Gap, None],
    *,
    last_id: int,
    kind: str,
    heartbeat: float | None = None,
) -> web.StreamResponse:
    """Send `events` until they end (the server stops) or the reader goes; `kind` labels
    the open-streams gauge (dashboard, consumer)."""
    period = HEARTBEAT if heartbeat is None else heartbeat
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # a proxy in front must not hold events back
        }
    )
    await response.prepare(request)
    lock = asyncio.Lock()  # one frame at a time: the heartbeat writes between events

    async def send(data: bytes) -> None:
        async with lock:
            await response.write(data)

    async def beat() -> None:
        while True:
            await asyncio.sleep(period)
            await send(b": keepalive\n\n")

    gauge = request.app[ENGINE].metrics.event_streams.labels(kind)
    gauge.inc()
    beating = asyncio.ensure_future(beat())
    try:
        await send(f"retry: {RETRY_MS}\n\n".encode() + frame("ready", {"lastEventId": last_id}))
        async with contextlib.aclosing(events):
            async for item in _until_gone(events, beating):
                if isinstance(item, Gap):
                    await send(frame("gap", {"after": item.after, "resumed": item.resumed}))
                else:
                    await send(frame("status", item.view(), item.id))
    except ConnectionError:
        pass  # the reader left: its stream ends here
    finally:
        gauge.dec()
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await beating
    return response


async def _until_gone(
    events: AsyncGenerator[JobEvent | Gap, None], beating: asyncio.Future[Any]
) -> AsyncGenerator[JobEvent | Gap, None]:
    """`events`, until the heartbeat fails (the reader left while no event came)."""
    while True:
        following: asyncio.Future[Any] = asyncio.ensure_future(anext(events))
        done, _ = await asyncio.wait({following, beating}, return_when=asyncio.FIRST_COMPLETED)
        if following not in done:
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await following
            beating.result()  # its ConnectionError ends the stream
            return
        try:
            yield following.result()
        except StopAsyncIteration:
            return
