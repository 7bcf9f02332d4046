"""A request that waits when the server says it came too soon: a 429 with a time to try
again (Retry-After, or localcompute's exact retryAfter) is waited out and sent again.
A server answers 429 having changed nothing and used up no nonce, so the same request,
signature and nonce included, is good again once its bucket has a token."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

# A longer wait is not back-pressure but a limit on jobs (waiting, per hour): the caller
# sees the refusal rather than a call that hangs.
MAX_WAIT = 10.0
TRIES = 6
# The server's clock and this one's sleep differ by a little: wake just after the token.
_MARGIN = 0.005


async def request(
    session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> aiohttp.ClientResponse:
    """`session.request(method, url, **kwargs)`, sent again after each 429 that says when
    (up to TRIES times, MAX_WAIT seconds each); the last answer is returned, open."""
    for _ in range(TRIES - 1):
        response = await session.request(method, url, **kwargs)
        if response.status != 429:
            return response
        wait = await retry_after(response)
        if wait is None or wait > MAX_WAIT:
            return response
        response.release()
        await asyncio.sleep(wait + _MARGIN)
    return await session.request(method, url, **kwargs)


async def retry_after(response: aiohttp.ClientResponse) -> float | None:
    """Seconds to wait: the body's retryAfter (exact), else the Retry-After header (whole
    seconds); None when the answer says neither. The body stays readable."""
    try:
        body = json.loads(await response.read())
    except ValueError:
        body = None
    if isinstance(body, dict):
        value = body.get("retryAfter")
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
    header = response.headers.get("Retry-After", "").strip()
    return float(header) if header.isdigit() else None
