"""Typed keys of what the application holds: set up in app.py, read by the handlers."""

from __future__ import annotations

from aiohttp import web

from localcompute.core.settings import Settings
from localcompute.engine import Engine
from localcompute.web.auth import ProviderKey
from localcompute.web.catalog import Catalog
from localcompute.web.tokens import TokenIssuer

ENGINE = web.AppKey("engine", Engine)
SETTINGS = web.AppKey("settings", Settings)
CATALOG = web.AppKey("catalog", Catalog)
PROVIDER_KEY = web.AppKey("provider_key", ProviderKey)
TOKENS = web.AppKey("tokens", TokenIssuer)


def base_url(request: web.Request) -> str:
    """Where clients reach this server: the start of every URL in a status object."""
    return request.app[SETTINGS].server.base_url
