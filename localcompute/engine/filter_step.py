"""The filter's step (50 → 60): the algorithm's outputs become the job's results, under
the filter timeout and the stop, or, without a complete run, are withheld.

The filter runs in its helper container (made ahead while the algorithm ran), or, where
that can change nothing but the time (helpers_here.py), as the same helper program on
this host, after the algorithm's container is gone.
"""

from __future__ import annotations

import asyncio
import os

from localcompute.core.models import Job
from localcompute.core.status import TerminationReason
from localcompute.engine.helpers_here import host_python, open_filter_folders
from localcompute.engine.outcome import EarlyEnd, Interruption
from localcompute.engine.stepkit import StepKit
from localcompute.engine.steps import Done, Moves
from localcompute.runtime import ContainerExit, ContainerState, containers
from localcompute.runtime.containers import JobContext, Stage
from localcompute.runtime.hostproc import HostProcess, by_descriptor, helper_argv
from localcompute.runtime.workspace import Workspace

WITHHELD = "Job failed: the output filter {why}; outputs withheld"


class FilterStep:
    def __init__(self, kit: StepKit) -> None:
        self.kit = kit

    async def here(self, ctx: JobContext) -> str | None:
        """The interpreter the job's filter runs with on this host; None: in its container."""
        allowed = self.kit.settings.docker.host_filter
        return await asyncio.to_thread(host_python, ctx, self.kit.runtime, allowed=allowed)

    async def run(self, job: Job, stop: asyncio.Event, moves: Moves) -> Done | EarlyEnd:
        ctx = self.kit.context(job)
        ws = ctx.workspace
        spec = containers.filter_container(ctx)
        ahead = self.kit.offpath.take(spec.name)
        if ahead is None:
            resumed = await self._left_behind(job, spec.name, ws)
            if resumed is not None:
                return resumed
        python = await self.here(ctx)
        if python is not None and ahead is not None:
            # Made ahead after all (the settings said otherwise then): it is not used.
            await ahead
            ahead = None
            self.kit.offpath.remove_later(job.job_id, spec.name)
        await asyncio.to_thread(ws.reset_results)
        # A stop the algorithm obeyed must not cut the filter of its partial outputs;
        # after an algorithm that ended on its own, a stop ends the filter. What the
        # algorithm did is the recorded fact, not whether the event is already set.
        obeyed = job.termination_reason is TerminationReason.STOPPED
        fresh_stop = asyncio.Event() if obeyed else stop
        limit = self.kit.settings.docker.filter_timeout
        log_to = ws.admin_log("filter.log")
        if python is None:
            exit_, interrupt = await self.kit.bounded.run(
                spec, limit=limit, stop=fresh_stop, log_to=log_to, append=False, ahead=ahead
            )
            self.kit.offpath.remove_later(job.job_id, spec.name)
        else:
            exit_, interrupt = await self._run_here(ctx, python, fresh_stop)
        return await self._outcome(ws, exit_, interrupt)

    async def _run_here(
        self, ctx: JobContext, python: str, stop: asyncio.Event
    ) -> tuple[ContainerExit, Interruption | None]:
        """The filter as a process of this host, given its folders by descriptor (no
        --logs: it uploads nothing, the results are already where the server serves them)."""
        ws, settings, allocation = ctx.workspace, self.kit.settings.docker, ctx.job.allocation
        outputs, results, meta = await asyncio.to_thread(open_filter_folders, ws)
        try:
            argv = helper_argv(
                python,
                "filter.py",
                "--outputs",
                by_descriptor(outputs),
                "--results",
                by_descriptor(results),
                "--manifest",
                f"{by_descriptor(meta)}/{ws.filter_manifest.name}",
                *(["--archive"] if ctx.job.spec.output_archive else []),
                *(["--copy"] if ctx.copy_outputs else []),
            )
            process = HostProcess(
                argv,
                user=ctx.user,
                pass_fds=(outputs, results, meta),
                cores=allocation.cpuset if allocation is not None else (),
                log_limit=settings.log_max_bytes,
            )
            return await self.kit.bounded.run_here(
                process,
                stage=Stage.FILTER,
                limit=settings.filter_timeout,
                stop=stop,
                log_to=ws.admin_log("filter.log"),
                append=False,
            )
        finally:
            for fd in (outputs, results, meta):
                os.close(fd)

    async def _outcome(
        self, ws: Workspace, exit_: ContainerExit, interrupt: Interruption | None
    ) -> Done | EarlyEnd:
        """What the filter's run means for its outputs: published only after a run that
        ended on its own with 0 and wrote its manifest."""
        # A zero exit is not enough: the manifest is the filter's word that every result
        # is whole, and without it a "completed" job would silently publish no outputs.
        if interrupt is None and exit_.exit_code == 0:
            if await asyncio.to_thread(ws.filter_finished):
                return filtered("")
            await asyncio.to_thread(ws.reset_results)
            return filtered(WITHHELD.format(why="ended without its manifest"))
        # Without a complete filter run no output may leave: publish the logs only.
        await asyncio.to_thread(ws.reset_results)
        if interrupt is Interruption.STOP:
            return EarlyEnd(reason=TerminationReason.STOPPED)
        why = (
            "timed out"
            if interrupt
            else exit_.reason
            if exit_.lost
            else f"ended with exit code {exit_.exit_code}"
        )
        return filtered(WITHHELD.format(why=why))

    async def _left_behind(self, job: Job, name: str, ws: Workspace) -> Done | None:
        """Resumed after a crash. The filter moves the outputs, so once begun it cannot
        run again: a filter still there is awaited (it carries on moving while the server
        is down), and a filter that wrote its manifest finished. Only a filter that began
        and was cut short (Docker itself restarted under it, or, run on this host, it died
        with the server) withholds the outputs. None: no filter began, so one runs now."""
        runtime, settings = self.kit.runtime, self.kit.settings.docker
        state = await runtime.state(name)
        exit_code: int | None = None
        if state is ContainerState.CREATED:  # made ahead, never started: nothing was moved
            await runtime.remove(name)
        elif state is not ContainerState.MISSING:
            try:
                exit_ = await asyncio.wait_for(runtime.wait(name), settings.filter_timeout)
                exit_code = exit_.exit_code
            except TimeoutError:
                await runtime.stop(name, 0)
            await runtime.logs_to_file(
                name, ws.admin_log("filter.log"), limit=settings.log_max_bytes, append=False
            )
            self.kit.offpath.remove_later(job.job_id, name)
        if await asyncio.to_thread(ws.filter_finished) and exit_code in (None, 0):
            return filtered("")
        unstarted = state in (ContainerState.MISSING, ContainerState.CREATED)
        if unstarted and not await asyncio.to_thread(ws.holds_results):
            return None
        await asyncio.to_thread(ws.reset_results)
        why = "was cut short by a restart" if exit_code is None else f"ended with {exit_code}"
        return filtered(WITHHELD.format(why=why))


def filtered(detail: str) -> Done:
    """The filter is done; `detail`: why its outputs were withheld (a system failure)."""
    return Done({"detail": detail} if detail else {})
