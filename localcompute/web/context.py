"""Typed keys of what the application holds: set up in app.py, read by the handlers."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from localcompute.core.settings import Settings
from localcompute.engine import Engine
from localcompute.engine.buckets import RequestBuckets
from localcompute.engine.catalog import Catalog
from localcompute.web.auth import ProviderKey
from localcompute.web.tokens import TokenIssuer

ENGINE = web.AppKey("engine", Engine)
SETTINGS = web.AppKey("settings", Settings)
CATALOG = web.AppKey("catalog", Catalog)
PROVIDER_KEY = web.AppKey("provider_key", ProviderKey)
TOKENS = web.AppKey("tokens", TokenIssuer)
# Every client's request buckets (web/throttle.py charges them).
BUCKETS = web.AppKey("request_buckets", RequestBuckets)


@dataclass
class PublicUrl:
    """Where clients reach this server. With port 0 it is known only once the socket is
    bound, so the serve loop sets it then; until then it is the configured one."""

    value: str


PUBLIC_URL = web.AppKey("public_url", PublicUrl)
# Answers that clients poll and that change only with the jobs in slots: the bytes of
# the last one, by what they depend on (see provider.environments).
POLL_CACHE = web.AppKey("poll_cache", dict)


def base_url(request: web.Request) -> str:
    """Where clients reach this server: the start of every URL in a status object."""
    return request.app[PUBLIC_URL].value
