"""Running one container to its end: started, awaited, killed at a deadline or on a stop
(SIGTERM, then SIGKILL after the grace), its log kept."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from pathlib import Path

from localcompute.core.settings import DockerSettings
from localcompute.engine.outcome import Interruption
from localcompute.runtime import ContainerExit, ContainerRuntime, ContainerSpec


class BoundedRun:
    def __init__(self, runtime: ContainerRuntime, docker_settings: DockerSettings) -> None:
        self.runtime = runtime
        self.docker_settings = docker_settings

    async def run(
        self,
        spec: ContainerSpec,
        *,
        limit: float,
        stop: asyncio.Event,
        log_to: Path,
        append: bool,
        disk_full: asyncio.Event | None = None,
        ahead: Awaitable[bool] | None = None,
    ) -> tuple[ContainerExit, Interruption | None]:
        """Start a helper container (created now, or `ahead` of time when that worked),
        wait for it and keep its log. Removing it is the caller's, once its status
        has moved on: off the job's critical path."""
        if ahead is None or not await ahead:
            await self.runtime.create(spec)
        await self.runtime.start(spec.name)
        exit_, interrupt = await self.await_exit(spec.name, time.time() + limit, stop, disk_full)
        await self.runtime.logs_to_file(
            spec.name, log_to, limit=self.docker_settings.log_max_bytes, append=append
        )
        return exit_, interrupt

    async def await_exit(
        self,
        name: str,
        deadline: float | None,
        stop: asyncio.Event,
        disk_full: asyncio.Event | None = None,
    ) -> tuple[ContainerExit, Interruption | None]:
        """Wait for the container; at the deadline, on a stop, or when its disk watcher
        fires, SIGTERM then SIGKILL it."""
        waiter = asyncio.ensure_future(self.runtime.wait(name))
        stopper = asyncio.ensure_future(stop.wait())
        filler = asyncio.ensure_future((disk_full or asyncio.Event()).wait())
        try:
            timeout = None if deadline is None else max(0.0, deadline - time.time())
            done, _ = await asyncio.wait(
                {waiter, stopper, filler}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            interrupt: Interruption | None = None
            if waiter not in done:
                interrupt = (
                    Interruption.STOP
                    if stopper in done
                    else Interruption.DISK
                    if filler in done
                    else Interruption.TIMEOUT
                )
                # Past its disk quota a job gets no grace: every second writes more.
                grace = 0 if interrupt is Interruption.DISK else self.docker_settings.stop_grace
                await self.runtime.stop(name, grace)
            return await waiter, interrupt
        finally:
            waiter.cancel()
            stopper.cancel()
            filler.cancel()
