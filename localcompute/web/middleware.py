"""One middleware maps every exception to a JSON answer, in the shape each API expects.

The provider API (/api/services) answers validation and signature errors as
{"errors": {field: [message]}, "message": "Validation error", "success": false}
and refusals as {"error": …}; the operator API (/api/v1) and the node dialect
([node] prefix) always as {"error": "…"}, a failed signature or token with 401.
Bad input never gives a 500.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from localcompute.core.errors import (
    AccessDeniedError,
    ConfigError,
    DockerUnavailableError,
    InvalidJobError,
    JobConflictError,
    JobNotFoundError,
    LimitError,
    LocalComputeError,
    NetworkDeniedError,
    RefusedError,
    RequestValidationError,
    SignatureError,
)
from localcompute.web.context import ENGINE, SETTINGS

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPERATOR_PREFIX = "/api/v1/"


def _json(status: int, body: Any) -> web.Response:
    return web.json_response(body, status=status)


def _validation(errors: dict[str, Any]) -> web.Response:
    return _json(400, {"errors": errors, "message": "Validation error", "success": False})


def _provider_answer(e: LocalComputeError) -> web.Response:
    if isinstance(e, RequestValidationError):
        return _validation(e.errors)
    if isinstance(e, SignatureError):
        return _validation({"signature": [e.message]})
    return _common_answer(e)


def _plain_answer(e: LocalComputeError) -> web.Response:
    if isinstance(e, RequestValidationError):
        text = "; ".join(m for messages in e.errors.values() for m in messages)
        return _json(400, {"error": text})
    if isinstance(e, SignatureError):
        return _json(401, {"error": e.message})
    return _common_answer(e)


def _too_many(e: LimitError) -> web.Response:
    """429 in every dialect: {"error": …} naming the limit, its value and when to retry
    (a Retry-After header too, when the clock decides)."""
    body: dict[str, Any] = {"error": e.message, "limit": e.limit, "value": e.value}
    if e.retry_after is None:
        return _json(429, body)
    body["retryAfter"] = round(e.retry_after, 3)
    response = _json(429, body)  # made once: an abuser's refusals are to cost little
    response.headers["Retry-After"] = str(max(1, math.ceil(e.retry_after)))
    return response


def _common_answer(e: LocalComputeError) -> web.Response:
    if isinstance(e, LimitError):
        return _too_many(e)
    if isinstance(e, RefusedError):
        return _json(400, {"error": e.payload})
    if isinstance(e, NetworkDeniedError):
        return _json(403, {"error": e.message})
    if isinstance(e, AccessDeniedError):
        return _json(401, {"error": e.message})
    if isinstance(e, JobNotFoundError):
        return _json(404, {"error": e.message})
    if isinstance(e, InvalidJobError | JobConflictError | SignatureError):
        return _json(400, {"error": e.message})
    if isinstance(e, DockerUnavailableError):
        return _json(503, {"error": e.message})
    if isinstance(e, ConfigError):
        return _json(500, {"error": e.message})
    log.error("unexpected %s: %s", type(e).__name__, e.message)
    return _json(500, {"error": e.message})


def _plain_errors(request: web.Request) -> bool:
    """The operator API and the node dialect answer every error as {"error": "…"}."""
    node = request.app[SETTINGS].node.prefix
    path = request.path
    return path.startswith(OPERATOR_PREFIX) or path == node or path.startswith(node + "/")


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        # Unknown routes, wrong methods, bodies over the limit: JSON like everything else.
        response = _json(e.status, {"error": e.reason})
        if e.status == 405 and "Allow" in e.headers:
            response.headers["Allow"] = e.headers["Allow"]
        return response
    except LocalComputeError as e:
        if isinstance(e, LimitError):
            request.app[ENGINE].metrics.refused(e.limit)
        return _plain_answer(e) if _plain_errors(request) else _provider_answer(e)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _json(500, {"error": "internal error; the server log says more"})


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Browsers (ocean.js in a page) may call every route; preflights are answered here."""
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        response: web.StreamResponse = web.Response(status=204)
    else:
        response = await handler(request)
    response.headers["Access-Control-Allow-Origin"] = "*"
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, DELETE, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = request.headers.get(
            "Access-Control-Request-Headers", "Content-Type"
        )
    return response
