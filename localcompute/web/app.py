"""The aiohttp application factory. Nothing happens at import time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from localcompute.core.settings import Settings
from localcompute.engine import Engine
from localcompute.engine.buckets import RequestBuckets
from localcompute.engine.catalog import Catalog
from localcompute.runtime.choice import runtime_for
from localcompute.web.auth import ProviderKey
from localcompute.web.context import (
    BUCKETS,
    CATALOG,
    ENGINE,
    POLL_CACHE,
    PROVIDER_KEY,
    PUBLIC_URL,
    SETTINGS,
    TOKENS,
    PublicUrl,
)
from localcompute.web.dashboard import setup_dashboard_routes
from localcompute.web.health import healthz
from localcompute.web.http_metrics import count_requests, count_result_bytes, metrics
from localcompute.web.middleware import cors, json_errors
from localcompute.web.openapi import openapi_handler
from localcompute.web.routes import setup_routes
from localcompute.web.stage import setup_stage_routes
from localcompute.web.tokens import TokenIssuer


async def _end_event_streams(app: web.Application) -> None:
    """Before the server waits for its requests to end: the event streams end now."""
    if ENGINE in app:
        app[ENGINE].events.close()


def create_app(settings: Settings, *, engine: Engine | None = None) -> web.Application:
    """Build the application; the catalog, keys and engine open and close with it."""
    app = web.Application(
        middlewares=[count_requests, cors, json_errors],
        client_max_size=settings.server.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[PUBLIC_URL] = PublicUrl(settings.server.base_url)
    app[POLL_CACHE] = {}
    # Memory only, made with the app: a restart forgets every bucket (they start full).
    app[BUCKETS] = RequestBuckets(settings.limits, operators=settings.operator.allowed_providers)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        # In the order a person fixes them: configuration, data folder (created, writable,
        # locked), keys, then store, Docker and the helper image (engine.start).
        app[CATALOG] = await asyncio.to_thread(Catalog.load, settings)
        app[ENGINE] = engine or Engine(settings, runtime=runtime_for(settings))
        app[ENGINE].catalog = app[CATALOG]
        await app[ENGINE].claim_data_dir()
        try:
            app[PROVIDER_KEY] = await asyncio.to_thread(
                ProviderKey.load,
                settings.provider.private_key,
                settings.provider.private_key_file,
                settings.data_dir,
            )
            app[TOKENS] = await asyncio.to_thread(
                TokenIssuer.load, settings.data_dir, settings.node.token_lifetime
            )
            app[ENGINE].key = app[PROVIDER_KEY]  # the receipts' signer: GET /'s address
            await app[ENGINE].start()
        except BaseException:
            await app[ENGINE].close()  # lets go of the data folder
            raise
        yield
        await app[ENGINE].close()

    app.cleanup_ctx.append(resources)
    setup_routes(app)
    setup_stage_routes(app)
    app.router.add_get("/api/openapi.json", openapi_handler)
    app.router.add_get("/api/openapi/{dialect}.json", openapi_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/health", healthz)
    app.router.add_get("/metrics", metrics)
    setup_dashboard_routes(app)
    app.on_shutdown.append(_end_event_streams)
    app.on_response_prepare.append(count_result_bytes)
    return app
