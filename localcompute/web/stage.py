"""The routes a job's fetch and filter use where they run on a node without this server's
disk (Swarm): thin, the rules are the engine's (engine/stage_files.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from localcompute.core.errors import AccessDeniedError, JobNotFoundError
from localcompute.engine.stage_files import StageFiles
from localcompute.web.context import ENGINE

PREFIX = "/api/runtime/jobs/{job_id}"
CHUNK = 256 * 1024


def _files(request: web.Request) -> tuple[StageFiles, str, str]:
    files = request.app[ENGINE].stage_files
    if files is None:
        raise JobNotFoundError("the engine has not started")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AccessDeniedError("a stage token is needed (Authorization: Bearer …)")
    return files, request.match_info["job_id"], token


async def fetch_spec(request: web.Request) -> web.FileResponse:
    files, job_id, token = _files(request)
    return web.FileResponse(await files.spec(job_id, token))


async def fetch_source(request: web.Request) -> web.FileResponse:
    files, job_id, token = _files(request)
    number = request.match_info["number"]
    if not number.isdigit():
        raise JobNotFoundError(f"no local file {number!r}")
    path = await files.source(job_id, int(number), token)
    return web.FileResponse(path)


async def filter_upload(request: web.Request) -> web.Response:
    files, job_id, token = _files(request)

    async def body() -> AsyncIterator[bytes]:
        while chunk := await request.content.read(CHUNK):
            yield chunk

    name = request.match_info["name"]
    await files.receive(job_id, token, name, request.headers.get("X-Content-Sha256"), body())
    return web.json_response({"received": name})


def setup_stage_routes(app: web.Application) -> None:
    app.router.add_get(PREFIX + "/fetch/fetch.json", fetch_spec, allow_head=False)
    app.router.add_get(PREFIX + "/fetch/sources/{number}", fetch_source, allow_head=False)
    app.router.add_put(PREFIX + "/filter/{name:.+}", filter_upload)
