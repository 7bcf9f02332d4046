"""Work the engine does again and again in the background (the sweep for left-overs, the
expiry of results), one way: a round that fails is logged and the next comes on time;
one that waits for Docker says so, without a traceback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from localcompute.core.errors import DockerUnavailableError

log = logging.getLogger(__name__)


async def every(
    seconds: float, what: str, work: Callable[[], Awaitable[object]], *, first: bool = True
) -> None:
    """Run `work` every `seconds`, forever (until cancelled); `first`: a round at once."""
    if not first:
        await asyncio.sleep(seconds)
    while True:
        try:
            await work()
        except DockerUnavailableError as e:
            log.warning("%s waits for Docker: %s", what, e)
        except Exception:
            log.exception("%s failed; trying again later", what)
        await asyncio.sleep(seconds)
