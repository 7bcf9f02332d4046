"""Result downloads and live logs, for every dialect: who may read what, and its bytes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from localcompute.core.errors import JobNotFoundError
from localcompute.core.models import Job, JobQuery
from localcompute.engine.livelog import LiveLog
from localcompute.web import throttle
from localcompute.web.context import ENGINE


async def readable_job(
    request: web.Request, job_id: str, reader: str, index: int, *, charged: str
) -> Job:
    """The job, if `reader` may fetch its result `index`; else a 404 that says why. The
    read is charged to `charged`'s bucket (the verified signer) once the job is known."""
    jobs = await request.app[ENGINE].find(JobQuery(job_id=job_id))
    readable = jobs[0] if jobs and jobs[0].may_read_results(reader) else None
    throttle.read(request, charged, readable)
    if readable is None:
        raise JobNotFoundError(f"No job {job_id} for {reader}")
    job = readable
    if not job.results:
        raise JobNotFoundError(f"No results for job {job_id} yet")
    if index >= len(job.results):
        raise JobNotFoundError(f"No such index {index} in this compute job")
    return job


async def file_response(path: Path, filename: str) -> web.FileResponse:
    """A result's bytes, with Range support and the headers Ocean's clients rely on."""
    if not await asyncio.to_thread(path.is_file):
        raise JobNotFoundError("the result file is gone (deleted or expired)")
    response = web.FileResponse(path)
    response.headers["Content-Disposition"] = f"attachment;filename={_header_safe(filename)}"
    response.headers["Access-Control-Expose-Headers"] = "Content-Disposition"
    return response


def _header_safe(filename: str) -> str:
    return "".join(c if c.isprintable() and c not in '"\\;' else "_" for c in filename)


def running_log(request: web.Request, job: Job) -> LiveLog:
    """The live output of `job`'s algorithm; a JSON 404 when it is not running."""
    live = request.app[ENGINE].live_log(job.job_id)
    if live is None:
        raise JobNotFoundError("Job not found or not running")
    return live


async def stream_log(request: web.Request, live: LiveLog) -> web.StreamResponse:
    """The algorithm's stdout and stderr as plain text, chunk by chunk as they come,
    until it exits. A slow client holds only its own reader (see LiveLog)."""
    response = web.StreamResponse(
        headers={"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-cache"}
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        async for chunk in live.follow():
            await response.write(chunk)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the reader left: its stream ends here, the job goes on
    return response
