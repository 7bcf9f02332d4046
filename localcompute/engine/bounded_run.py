"""Running one container to its end: started, awaited, killed at a deadline or on a stop
(SIGTERM, then SIGKILL after the grace), its log kept."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from localcompute.core.settings import DockerSettings
from localcompute.engine import failpoints
from localcompute.engine.outcome import Interruption
from localcompute.runtime import ContainerExit, ContainerRuntime, ContainerSpec
from localcompute.runtime.hostproc import HostProcess
from localcompute.runtime.logfile import write_capped


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

    async def run_here(
        self,
        process: HostProcess,
        *,
        stage: str,
        limit: float,
        stop: asyncio.Event,
        log_to: Path,
        append: bool,
        disk_full: asyncio.Event | None = None,
    ) -> tuple[ContainerExit, Interruption | None]:
        """As run, for a helper run as a process of this host: the same deadline, stop
        and disk watch, its output kept in the same log. `stage` names its failpoints."""
        failpoints.hit(f"{stage}.here_before_start")
        await process.start()
        failpoints.hit(f"{stage}.here_after_start")

        async def exited() -> ContainerExit:
            failpoints.hit(f"{stage}.here_before_wait")
            exit_ = await process.wait()
            failpoints.hit(f"{stage}.here_after_wait")
            return exit_

        exit_, interrupt = await self._bounded(
            exited(), process.stop, time.time() + limit, stop, disk_full
        )
        output = bytes(process.output)
        await asyncio.to_thread(
            write_capped, [output], log_to, limit=self.docker_settings.log_max_bytes, append=append
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

        async def stop_it(grace: float) -> None:
            await self.runtime.stop(name, grace)

        return await self._bounded(self.runtime.wait(name), stop_it, deadline, stop, disk_full)

    async def _bounded(
        self,
        exited: Awaitable[ContainerExit],
        stop_it: Callable[[float], Awaitable[None]],
        deadline: float | None,
        stop: asyncio.Event,
        disk_full: asyncio.Event | None,
    ) -> tuple[ContainerExit, Interruption | None]:
        waiter = asyncio.ensure_future(exited)
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
                await stop_it(grace)
            return await waiter, interrupt
        finally:
            waiter.cancel()
            stopper.cancel()
            filler.cancel()
