"""A server's event stream as the client reads it: Server-Sent Events frames, parsed."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import aiohttp

from localcompute.client import transfer


@dataclass(frozen=True)
class Frame:
    kind: str  # ready, status or gap
    data: dict[str, Any]
    event_id: int | None = None


async def frames(response: aiohttp.ClientResponse) -> AsyncGenerator[Frame]:
    """Each event of the stream as it comes (comments and retry lines skipped); ends with
    the response, which it releases."""
    kind, data, event_id = "", "", None
    async for line in transfer.lines(response):
        if line.startswith(":"):
            continue
        if line == "":
            if kind:
                yield Frame(kind, json.loads(data) if data else {}, event_id)
            kind, data, event_id = "", "", None
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            kind = value
        elif name == "data":
            data = value if not data else data + "\n" + value
        elif name == "id" and value.isdigit():
            event_id = int(value)
