"""GET /healthz (and /health): 200 when the store, Docker and the helper image are
usable, else 503; each check with how long it took, as JSON."""

from __future__ import annotations

import dataclasses

from aiohttp import web

from localcompute import __version__
from localcompute.web.context import ENGINE


async def healthz(request: web.Request) -> web.Response:
    checks = await request.app[ENGINE].health()
    ok = all(c.ok for c in checks.values())
    return web.json_response(
        {
            "status": "ok" if ok else "unavailable",
            "version": __version__,
            "checks": {name: dataclasses.asdict(c) for name, c in checks.items()},
        },
        status=200 if ok else 503,
    )
