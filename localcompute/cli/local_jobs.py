"""The jobs of a local `localcompute run`, asked of the engine in the command's own process.

`run --server` talks to a provider through localcompute.client; a local run has its
engine right here, so it asks it directly, in the same terms (`RemoteJob`, the status
object the provider API serves), without an HTTP server, a client session or a
signature in between. That is most of what the command costs beyond its job: aiohttp's
client and server, and their round trips. The job itself is the same: its spec is made
as the provider API's start makes it (the catalog's inputs and its checks), and it runs
the same steps. Only `run --ui` serves the engine, for the page (run_local.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from localcompute.client.models import RemoteJob
from localcompute.client.refusals import as_answered
from localcompute.core.errors import RefusedError, RemoteError
from localcompute.core.jobspec import AlgorithmSpec, JobSpec
from localcompute.core.models import Job
from localcompute.core.signing import Key
from localcompute.engine import Engine
from localcompute.web.views import provider_status

StatusCallback = Callable[[RemoteJob], Awaitable[None] | None]


class JobClient(Protocol):
    """What `localcompute run` asks of whoever runs its job: localcompute.client's
    Client (a provider, or the command's engine served for --ui) or LocalJobs."""

    url: str

    async def __aenter__(self) -> JobClient: ...

    async def __aexit__(self, *exc: Any) -> None: ...

    async def start(
        self,
        datasets: list[str],
        *,
        rawcode: str | None = None,
        image: str = "",
        tag: str = "latest",
        entrypoint: str = "",
        environment: str | None = None,
        algocustomdata: Any = None,
    ) -> RemoteJob: ...

    async def wait(
        self, job_id: str, *, on_status: StatusCallback | None = None, poll: float = 0.25
    ) -> RemoteJob: ...

    async def stop(self, job_id: str) -> RemoteJob: ...

    def logs(self, job_id: str) -> AsyncIterator[str]: ...

    async def download(
        self, job_id: str, which: int | str, dest: Path, *, job: RemoteJob | None = None
    ) -> Path: ...


class LocalJobs:
    """What `localcompute run` asks of a provider (start, wait, follow the log, download,
    stop), answered by `engine`, as the job's owner `key` (made for this run)."""

    url = ""  # nothing is served: no page to show

    def __init__(self, engine: Engine, key: Key | None = None) -> None:
        assert engine.catalog is not None, "the engine is started"
        self.engine = engine
        self.catalog = engine.catalog
        self.address = (key or Key.random()).address
        self._jobs: dict[str, Job] = {}

    async def __aenter__(self) -> LocalJobs:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None

    def _view(self, job: Job) -> RemoteJob:
        self._jobs[job.job_id] = job
        return RemoteJob.parse(dict(provider_status(job, "")))

    async def start(
        self,
        datasets: list[str],
        *,
        rawcode: str | None = None,
        image: str = "",
        tag: str = "latest",
        entrypoint: str = "",
        environment: str | None = None,
        algocustomdata: Any = None,
    ) -> RemoteJob:
        """As the provider API's start: the datasets by DID, from the catalog, with the
        catalog's say on raw code; the algorithm as raw code in its container."""
        if not datasets:
            raise ValueError("a job needs at least one dataset DID")
        algorithm = AlgorithmSpec(
            rawcode=rawcode,
            image=image,
            tag=tag or "latest",
            entrypoint=entrypoint,
            algocustomdata=algocustomdata,
        )
        try:
            inputs = self.catalog.inputs(datasets, None)  # as the provider API's start
            spec = JobSpec(
                environment=environment or "",
                owner=self.address,
                inputs=inputs,
                algorithm=algorithm,
                api="provider",
            )
            job_id = await self.engine.submit(spec)
        except RefusedError as e:
            raise as_answered(e, datasets) from None
        return self._view(await self.engine.get(job_id))

    async def wait(
        self, job_id: str, *, on_status: StatusCallback | None = None, poll: float = 0.1
    ) -> RemoteJob:
        """The job once final; `on_status(job)` at each new status, as the engine's event
        feed says it (`poll`: how often to look again should an event be missed)."""
        seen: int | None = None
        changed = asyncio.Event()

        async def watch(after: int) -> None:
            async for event in self.engine.events.follow(after):
                if getattr(event, "job_id", job_id) == job_id:  # a Gap names no job
                    changed.set()

        watcher = asyncio.create_task(watch(self.engine.events.last_id))
        try:
            job = self._view(await self.engine.get(job_id))
            while True:
                if job.status != seen:
                    seen = job.status
                    if on_status is not None:
                        answer = on_status(job)
                        if inspect.isawaitable(answer):
                            await answer
                if job.is_final:
                    return job
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), poll)
                changed.clear()  # before the read: a change after it wakes the next wait
                job = self._view(await self.engine.get(job_id))
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def stop(self, job_id: str) -> RemoteJob:
        return self._view(await self.engine.stop(job_id))

    async def logs(self, job_id: str) -> AsyncGenerator[str]:
        """The algorithm's output line by line, live while it runs (waiting for it to
        start), or, once the job has ended, its published log."""
        while True:
            live = self.engine.live_log(job_id)
            if live is not None:
                pending = b""
                async for chunk in live.follow():
                    *lines, pending = (pending + chunk).split(b"\n")
                    for line in lines:
                        yield line.decode("utf-8", errors="replace")
                if pending:
                    yield pending.decode("utf-8", errors="replace")
                return
            view = self._view(await self.engine.get(job_id))
            if view.is_final:
                break
            await asyncio.sleep(0.05)
        published = view.published_log()
        text = await asyncio.to_thread(self._path(job_id, published.index).read_bytes)
        for text_line in text.decode("utf-8", errors="replace").splitlines():
            yield text_line

    async def download(
        self, job_id: str, which: int | str, dest: Path, *, job: RemoteJob | None = None
    ) -> Path:
        """Result `which` copied into `dest` (a folder: under its own name), checked
        against the size and sha256 the job lists."""
        view = job or self._view(await self.engine.get(job_id))
        view.check_not_removed()
        result = view.result(which)
        target = dest / result.filename if await asyncio.to_thread(dest.is_dir) else dest
        source = self._path(job_id, result.index)
        listed = self._jobs[job_id].results[result.index]
        await asyncio.to_thread(_copy_checked, source, target, listed.filesize, listed.sha256)
        return target

    def _path(self, job_id: str, index: int) -> Path:
        return self.engine.result_path(self._jobs[job_id], index)


def _copy_checked(source: Path, target: Path, size: int, sha256: str) -> None:
    digest = hashlib.sha256()
    with source.open("rb") as src, target.open("wb") as out:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    got = target.stat().st_size
    if got != size or (sha256 and digest.hexdigest() != sha256):
        raise RemoteError(f"{target.name}: not the file the job lists", status=0)
