"""The environments list the classic provider's dialect and the Operator-Service's both
answer with: one view of the engine's environments, read now."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from localcompute.web.context import ENGINE, PROVIDER_KEY, SETTINGS
from localcompute.web.views import environment_views


async def environment_list(request: web.Request) -> list[dict[str, Any]]:
    engine = request.app[ENGINE]
    return environment_views(
        request.app[SETTINGS],
        engine.cpu_types,
        await engine.current_jobs(),
        request.app[PROVIDER_KEY].address,
        await engine.environment_states(),
    )
