"""Moving a response's bytes: as lines while they arrive, or into a file off the loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path

import aiohttp

CHUNK = 64 * 1024


async def lines(response: aiohttp.ClientResponse) -> AsyncGenerator[str]:
    """The body's lines as they arrive, without their newlines; the response released."""
    pending = b""
    try:
        async for chunk in response.content.iter_any():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.decode("utf-8", errors="replace")
        if pending:
            yield pending.decode("utf-8", errors="replace")
    finally:
        response.release()


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


async def write(response: aiohttp.ClientResponse, target: Path, append: bool) -> None:
    """The body into `target`, through a bounded thread so the loop never blocks on disk."""
    handle = await asyncio.to_thread(open, target, "ab" if append else "wb")
    try:
        async for chunk in response.content.iter_chunked(CHUNK):
            await asyncio.to_thread(handle.write, chunk)
    finally:
        await asyncio.to_thread(handle.close)
