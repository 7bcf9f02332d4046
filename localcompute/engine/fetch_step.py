"""The fetch's step (10/20 → 30): the job's folder laid out clean, the inputs and the
algorithm fetched into it under the fetch timeout, the stop and the disk quota, while the
algorithm's image is pulled and its container made ahead.

The fetch runs in its helper container, or, when it downloads nothing and can change
nothing but the time (helpers_here.py), as the same helper program on this host.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from localcompute.core.models import Job
from localcompute.core.status import JobStatus, TerminationReason
from localcompute.engine.helpers_here import HostFetch, host_fetch, open_workspace
from localcompute.engine.outcome import EarlyEnd, Interruption, fetch_ending, first_failure
from localcompute.engine.stepkit import StepKit
from localcompute.engine.steps import Done, Moves
from localcompute.runtime import ContainerExit, ContainerSpec, containers
from localcompute.runtime.containers import JobContext, Stage
from localcompute.runtime.hostproc import HostProcess, by_descriptor, helper_argv
from localcompute.runtime.workspace import text_or_empty


class FetchStep:
    def __init__(self, kit: StepKit, provision: Callable[[Job], Awaitable[str | None]]) -> None:
        self.kit = kit
        # The algorithm's image and container, got ready while the fetch runs: None
        # when ready, else why not.
        self._provision = provision

    async def run(self, job: Job, stop: asyncio.Event, moves: Moves) -> Done | EarlyEnd:
        if stop.is_set():
            return EarlyEnd(reason=TerminationReason.STOPPED)
        ctx = self.kit.context(job)
        # A fetch left by a crash is run again from a clean folder: it only reads
        # sources and writes the job's data, so running it twice is safe (the
        # algorithm is never run twice). The one left behind may still be running and
        # writing: it goes before the folder is cleaned, not after (a fetch run on this
        # host died with the server that started it).
        spec = containers.fetch_container(ctx)
        if moves.resumed:
            await self.kit.runtime.remove(spec.name)
        allowed = self.kit.settings.docker.host_fetch
        here = await asyncio.to_thread(host_fetch, ctx, self.kit.runtime, allowed=allowed)
        try:
            return await self._fetch(ctx, spec, here, stop)
        finally:
            if here is not None:
                here.close()

    async def _fetch(
        self, ctx: JobContext, spec: ContainerSpec, here: HostFetch | None, stop: asyncio.Event
    ) -> Done | EarlyEnd:
        job, ws, kit = ctx.job, ctx.workspace, self.kit
        limit = kit.disk_limit(job)

        def make_data(folder: Path) -> None:
            kit.disk.attach(folder, limit, job.job_id)

        sources = here.sources if here is not None else None
        document = containers.fetch_document(ctx, sources=sources)
        await asyncio.to_thread(ws.prepare, document, make_data)
        pull = asyncio.ensure_future(self._provision(job))
        try:
            async with kit.disk_watch(ws.data, limit) as over:
                exit_, interrupt = await self._run_once(ctx, spec, here, stop, over)
            if here is None:
                kit.offpath.remove_later(job.job_id, spec.name)
            if exit_.lost:
                return EarlyEnd(
                    reason=TerminationReason.ERROR, detail=f"Job failed: {exit_.reason}"
                )
            full = exit_.exit_code != 0 and await kit.disk_full(ws.data, limit)
            timeout = kit.settings.docker.fetch_timeout
            ending = fetch_ending(exit_, interrupt, timeout, disk_full=full, disk_limit=limit)
            if ending is not None:
                if ending.status != JobStatus.JOB_COMPLETED and not ending.detail:
                    fetch_log = await asyncio.to_thread(
                        text_or_empty, ws.admin_log("configure.log")
                    )
                    ending = replace(ending, detail=first_failure(fetch_log), logged=True)
                return ending
            pull_error = await pull
        finally:
            pull.cancel()
        if pull_error is not None:
            return EarlyEnd(JobStatus.ALGORITHM_PROVISIONING_FAILED, detail=pull_error)
        return Done()

    async def _run_once(
        self,
        ctx: JobContext,
        spec: ContainerSpec,
        here: HostFetch | None,
        stop: asyncio.Event,
        disk_full: asyncio.Event | None,
    ) -> tuple[ContainerExit, Interruption | None]:
        """The fetch's one run, in its container or `here`, under the same deadline,
        stop and disk watch, its output appended to configure.log."""
        ws, settings = ctx.workspace, self.kit.settings.docker
        log_to, timeout = ws.admin_log("configure.log"), settings.fetch_timeout
        if here is None:
            return await self.kit.bounded.run(
                spec, limit=timeout, stop=stop, log_to=log_to, append=True, disk_full=disk_full
            )
        allocation = ctx.job.allocation
        data, document = await asyncio.to_thread(open_workspace, ws)
        try:
            process = HostProcess(
                helper_argv(
                    here.python, "fetch.py", by_descriptor(document), "--data", by_descriptor(data)
                ),
                user=ctx.user,
                pass_fds=(*here.fds, data, document),
                cores=allocation.cpuset if allocation is not None else (),
                log_limit=settings.log_max_bytes,
            )
            return await self.kit.bounded.run_here(
                process,
                stage=Stage.FETCH,
                limit=timeout,
                stop=stop,
                log_to=log_to,
                append=True,
                disk_full=disk_full,
            )
        finally:
            os.close(data)
            os.close(document)
