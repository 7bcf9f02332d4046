"""The aiohttp application factory. Nothing happens at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from localcompute import __version__
from localcompute.engine import Engine
from localcompute.settings import Settings

ENGINE = web.AppKey("engine", Engine)
SETTINGS = web.AppKey("settings", Settings)


def create_app(settings: Settings, *, engine: Engine | None = None) -> web.Application:
    """Build the application; the engine opens and closes with it."""
    app = web.Application()
    app[SETTINGS] = settings

    async def engine_ctx(app: web.Application) -> AsyncIterator[None]:
        app[ENGINE] = engine or Engine(settings)
        await app[ENGINE].start()
        yield
        await app[ENGINE].close()

    app.cleanup_ctx.append(engine_ctx)
    app.router.add_get("/", root)
    return app


async def root(request: web.Request) -> web.Response:
    return web.json_response({"software": "localcompute", "version": __version__})
