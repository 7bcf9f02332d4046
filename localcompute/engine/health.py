"""The engine's health: whether the store, the Docker engine and the helper image are
usable now, each with how long asking took."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from localcompute.runtime import ContainerRuntime
from localcompute.store import Store

# How long one health check may take before it counts as failed.
HEALTH_TIMEOUT = 2.0


@dataclass(frozen=True)
class Check:
    ok: bool
    ms: float
    error: str | None = None


async def _timed(probe: Callable[[], Awaitable[str | None]]) -> Check:
    start = time.perf_counter()
    try:
        error = await asyncio.wait_for(probe(), HEALTH_TIMEOUT)
    except TimeoutError:
        error = f"no answer within {HEALTH_TIMEOUT:g} s"
    except Exception as e:  # a health check reports every failure, it never raises
        error = f"{type(e).__name__}: {e}"
    return Check(error is None, round((time.perf_counter() - start) * 1000, 2), error)


async def health_checks(
    store: Store, runtime: ContainerRuntime, helper_image: str
) -> dict[str, Check]:
    """Three cheap calls: fit to poll every second."""

    async def store_answers() -> str | None:
        await store.instance_id()
        return None

    async def docker() -> str | None:
        return None if await runtime.ping() else "the Docker engine does not answer"

    async def image() -> str | None:
        if await runtime.image_exists(helper_image):
            return None
        return f"the helper image {helper_image} is missing: run `localcompute images build`"

    checks = {"store": store_answers, "docker": docker, "helper_image": image}
    return {name: await _timed(probe) for name, probe in checks.items()}
