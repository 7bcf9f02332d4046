"""The operator's dashboard: a page, its data, and its live event stream, at /ui/.

Only [server] metrics_allow's networks may open any of it (web/access.py): it shows
every consumer's jobs, their output and their results, which is the operator's to
see and no consumer's. The page is three static files shipped in the package
(web/dashboard_static/): no build step, no CDN, nothing fetched from elsewhere.
"""

from __future__ import annotations

import asyncio
import re
from importlib import resources
from typing import Any

from aiohttp import web

from localcompute.core.errors import JobNotFoundError, RequestValidationError
from localcompute.core.models import JobQuery, ResultType
from localcompute.core.status import JobStatus
from localcompute.web.access import require_operator
from localcompute.web.context import ENGINE
from localcompute.web.dashboard_views import job_detail, job_summary, overview_view
from localcompute.web.results import file_response, stream_log
from localcompute.web.sse import last_event_id, stream_feed

PREFIX = "/ui"
STATIC = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "app.css": "text/css",
}
MAX_LISTED = 500
_STATUSES = frozenset(int(s) for s in JobStatus)
_HEX = re.compile(r"^[0-9a-f]{1,64}$")
# The page never loads anything but itself: an algorithm's output that got past the
# escaping still could not run a script from elsewhere, nor send data anywhere.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _static_bytes(name: str) -> bytes:
    return resources.files("localcompute.web").joinpath("dashboard_static", name).read_bytes()


async def _static(request: web.Request, name: str) -> web.Response:
    require_operator(request, "the dashboard")
    body = await asyncio.to_thread(_static_bytes, name)
    return web.Response(
        body=body,
        content_type=STATIC[name],
        charset="utf-8",
        headers={
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        },
    )


async def page(request: web.Request) -> web.Response:
    return await _static(request, "index.html")


async def static_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC or name == "index.html":
        raise JobNotFoundError(f"no such file of the dashboard: {name[:80]}")
    return await _static(request, name)


async def to_page(request: web.Request) -> web.Response:
    raise web.HTTPPermanentRedirect(PREFIX + "/")


async def overview(request: web.Request) -> web.Response:
    require_operator(request, "the dashboard")
    return web.json_response(overview_view(await request.app[ENGINE].overview()))


def _invalid(name: str, why: str) -> RequestValidationError:
    return RequestValidationError({name: [why]})


def _job_query(params: Any) -> JobQuery:
    """The jobs table's filters: status, owner, environment, id (a prefix), limit."""
    status = params.get("status") or None
    if status is not None and (not status.isdigit() or int(status) not in _STATUSES):
        raise _invalid("status", f"{status[:20]!r} is not a job status number")
    job_id = (params.get("q") or "").strip().lower() or None
    if job_id is not None and not _HEX.match(job_id):
        raise _invalid("q", "a job id, or its first hexadecimal digits")
    limit = params.get("limit") or "200"
    if not limit.isdigit() or not 0 < int(limit) <= MAX_LISTED:
        raise _invalid("limit", f"from 1 to {MAX_LISTED}")
    return JobQuery(
        status=JobStatus.numbered(int(status)) if status is not None else None,
        owner=params.get("owner") or None,
        environment=params.get("environment") or None,
        job_id_prefix=job_id,
        newest_first=True,
        limit=int(limit),
    )


async def jobs(request: web.Request) -> web.Response:
    require_operator(request, "the dashboard")
    engine = request.app[ENGINE]
    last = engine.events.last_id
    found = await engine.find(_job_query(request.query))
    return web.json_response(
        {
            "jobs": [job_summary(j, engine.pull_time(j.job_id)) for j in found],
            "lastEventId": last,
            "limit": MAX_LISTED,
        }
    )


async def _job(request: web.Request) -> Any:
    job_id = request.match_info["job_id"]
    found = await request.app[ENGINE].find(JobQuery(job_id=job_id)) if _HEX.match(job_id) else []
    if not found:
        raise JobNotFoundError(f"no job {job_id[:80]}")
    return found[0]


async def job(request: web.Request) -> web.Response:
    require_operator(request, "the dashboard")
    engine = request.app[ENGINE]
    last = engine.events.last_id
    found = await _job(request)
    running = engine.live_log(found.job_id) is not None
    detail = job_detail(found, running=running, pull=engine.pull_time(found.job_id))
    return web.json_response({**detail, "lastEventId": last})


async def job_log(request: web.Request) -> web.StreamResponse:
    """The algorithm's output: live while it runs, the published log once it has ended."""
    require_operator(request, "the dashboard")
    found = await _job(request)
    live = request.app[ENGINE].live_log(found.job_id)
    if live is not None:
        return await stream_log(request, live)
    for index, result in enumerate(found.results):
        if result.type == ResultType.ALGORITHM_LOG:
            path = request.app[ENGINE].result_path(found, index)
            response = await file_response(path, result.filename)
            response.headers["Content-Type"] = "text/plain; charset=utf-8"
            del response.headers["Content-Disposition"]
            return response
    if found.is_final:
        raise JobNotFoundError(f"job {found.job_id} has no algorithm log: its algorithm never ran")
    raise JobNotFoundError(f"job {found.job_id}'s algorithm has not started yet")


async def job_result(request: web.Request) -> web.FileResponse:
    require_operator(request, "the dashboard")
    found = await _job(request)
    raw = request.match_info["index"]
    index = int(raw) if raw.isdigit() else -1
    if not 0 <= index < len(found.results):
        raise JobNotFoundError(f"job {found.job_id} has no result {raw[:20]}")
    result = found.results[index]
    return await file_response(request.app[ENGINE].result_path(found, index), result.filename)


async def events(request: web.Request) -> web.StreamResponse:
    """Every job's status changes, live (Server-Sent Events), from Last-Event-ID on."""
    require_operator(request, "the dashboard")
    after = last_event_id(request, request.query.get("lastEventId"))
    return await stream_feed(request, after, kind="dashboard")


def setup_dashboard_routes(app: web.Application) -> None:
    add = app.router.add_get
    add(PREFIX, to_page)
    add(PREFIX + "/", page)
    add(PREFIX + "/static/{name}", static_file)
    add(PREFIX + "/api/overview", overview)
    add(PREFIX + "/api/jobs", jobs)
    add(PREFIX + "/api/jobs/{job_id}", job)
    add(PREFIX + "/api/jobs/{job_id}/log", job_log, allow_head=False)
    add(PREFIX + "/api/jobs/{job_id}/results/{index}", job_result, allow_head=False)
    add(PREFIX + "/events", events, allow_head=False)
