"""GET /metrics (Prometheus text format) and what the HTTP edge counts for it.

Only the addresses in [server] metrics_allow may read it (web/access.py).
"""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from localcompute.web.access import require_operator
from localcompute.web.context import ENGINE
from localcompute.web.middleware import Handler


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Requests and their latency, by route template (never the raw path: no job ids)."""
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        if ENGINE in request.app:
            resource = getattr(request.match_info.route, "resource", None)
            route = resource.canonical if resource is not None else "unmatched"
            metrics = request.app[ENGINE].metrics
            metrics.http_requests.labels(route, request.method, str(status)).inc()
            metrics.http_seconds.labels(route).observe(time.perf_counter() - start)


async def count_result_bytes(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: a result's bytes, as many as this answer sends (Range too)."""
    if isinstance(response, web.FileResponse) and response.content_length and ENGINE in request.app:
        request.app[ENGINE].metrics.result_bytes.inc(response.content_length)


async def metrics(request: web.Request) -> web.Response:
    require_operator(request, "the metrics")
    body = await request.app[ENGINE].metrics_text()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
