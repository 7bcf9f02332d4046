"""The algorithm's step: its image pulled and its container made ahead while the fetch
runs; then created (if not yet), moved to 40, started, followed live and awaited under
its time limit and disk; what it did recorded at the move to 50.

A container that exists is continued whatever its state, so the algorithm runs at most
once, even across restarts of the server or of Docker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from pathlib import Path

from localcompute.core.errors import ContainerError, DockerUnavailableError, ImageNotFoundError
from localcompute.core.lru import Lru
from localcompute.core.models import Job
from localcompute.core.provenance import RanImage
from localcompute.core.settings import EnvironmentSettings
from localcompute.core.status import JobStatus, StopRequest, TerminationReason
from localcompute.engine.helpers_here import host_python
from localcompute.engine.livelog import LiveLog, move_log
from localcompute.engine.outcome import (
    EarlyEnd,
    Interruption,
    algorithm_outcome,
    interrupt_while_away,
    killed_by_docker_restart,
)
from localcompute.engine.stepkit import StepKit
from localcompute.engine.steps import Done, Moves
from localcompute.runtime import ContainerExit, ContainerState, containers
from localcompute.runtime.containers import JobContext, Stage

log = logging.getLogger(__name__)

# How long the algorithm's log stream may take to end after the container did.
LOG_DRAIN_SECONDS = 30.0
PULL_TIMES_KEPT = 1024


class AlgorithmStep:
    def __init__(self, kit: StepKit) -> None:
        self.kit = kit
        # The output of every algorithm running now, for readers that follow it live.
        self.live_logs: dict[str, LiveLog] = {}
        # Job id → when Docker stopped answering while its algorithm ran.
        self._docker_lost: dict[str, float] = {}
        # Jobs whose algorithm's start was sent and never answered (Docker went away):
        # Docker may have run it, and may say "created" when it is back.
        self._start_unanswered: set[str] = set()
        # When each recent job's image pull began and ended (it runs beside the fetch):
        # for the dashboard's timeline only, so memory, and forgotten at a restart.
        self.pull_times: Lru[str, tuple[float, float]] = Lru(PULL_TIMES_KEPT)

    def forget(self, job_id: str) -> None:
        """The job has ended: what was noted of it goes."""
        self._docker_lost.pop(job_id, None)
        self._start_unanswered.discard(job_id)

    async def provision(self, job: Job) -> str | None:
        """While fetch runs: pull the algorithm's image, then create its container ahead.
        None when the image is ready, else why it is not."""
        ref = job.spec.algorithm.image_ref
        start, began = time.monotonic(), time.time()
        try:
            await self.kit.runtime.ensure_image(ref, self.kit.settings.docker.pull_policy)
        except ImageNotFoundError as e:
            return f"algorithm image {ref} is not available: {e.message}"
        self.kit.metrics.pulled(time.monotonic() - start)
        self.pull_times.put(job.job_id, (began, time.time()))
        env = self.kit.settings.environment(job.environment)
        if env is not None:
            ctx = self.kit.context(job)
            self.kit.offpath.create_ahead(job.job_id, containers.algorithm_container(ctx, env))
        return None

    async def run(self, job: Job, stop: asyncio.Event, moves: Moves) -> Done | EarlyEnd:
        ctx = self.kit.context(job)
        env = self.kit.settings.environment(job.environment)
        if env is None:
            return EarlyEnd(
                reason=TerminationReason.ERROR,
                detail=f"environment {job.environment} is no longer configured",
            )
        # Open to readers before the job says "Running algorithm": a client that starts
        # following when it sees 40 must find the log, not a 404.
        ws = ctx.workspace
        live = await LiveLog.create(ws.live_algorithm_log, self.kit.settings.docker.log_max_bytes)
        self.live_logs[job.job_id] = live
        try:
            return await self._run_algorithm(job, ctx, env, live, stop, moves)
        finally:
            self.live_logs.pop(job.job_id, None)
            await live.close()
            # Moved into algorithm.log when the algorithm ran; else nothing to keep.
            await asyncio.to_thread(live.path.unlink, missing_ok=True)

    async def _filter_ahead(self, ctx: JobContext) -> None:
        """The filter's container is made while the algorithm runs, unless it runs here."""
        allowed = self.kit.settings.docker.host_filter
        if await asyncio.to_thread(host_python, ctx, self.kit.runtime, allowed=allowed) is None:
            self.kit.offpath.create_ahead(ctx.job.job_id, containers.filter_container(ctx))

    async def _run_algorithm(
        self,
        job: Job,
        ctx: JobContext,
        env: EnvironmentSettings,
        live: LiveLog,
        stop: asyncio.Event,
        moves: Moves,
    ) -> Done | EarlyEnd:
        """Create, start and await the algorithm, or carry on with the container Docker has.

        A container that exists is continued whatever its state: created is started
        (never made again), running is re-attached, exited is carried on to the filter.
        So the algorithm runs at most once, and is lost only when Docker has no trace
        of it. One exception: a start whose answer Docker never gave (it went away) is
        not sent again, even if Docker says "created" when it is back, since it may have
        run. The container goes only after its exit is written (40 → 50).
        """
        name = ctx.name(Stage.ALGORITHM)
        state = await self._algorithm_state(name)
        resumed = state in (ContainerState.RUNNING, ContainerState.EXITED)
        if job.status == JobStatus.PROVISIONING_SUCCESS:
            if stop.is_set():
                await self.kit.runtime.remove(name)
                return EarlyEnd(reason=TerminationReason.STOPPED)
            if state is ContainerState.MISSING:
                try:
                    await self.kit.runtime.create(containers.algorithm_container(ctx, env))
                except ImageNotFoundError as e:
                    note = f"algorithm image {job.spec.algorithm.image_ref}: {e.message}"
                    return EarlyEnd(JobStatus.ALGORITHM_PROVISIONING_FAILED, detail=note)
                state = ContainerState.CREATED
            job = await moves.enter()
        if state is ContainerState.MISSING:
            lost = "Job failed: the algorithm container was lost while the server was down"
            return _ended(None, TerminationReason.ERROR, lost)
        if state is ContainerState.CREATED and job.job_id in self._start_unanswered:
            # Docker went away while it was being started and came back saying it never
            # started; its process may have run before Docker could record it. At most
            # once: it is not started again.
            self.kit.offpath.remove_later(job.job_id, name)
            unsure = (
                "Job failed: the Docker engine went away while the algorithm was being "
                "started; it may have run, so it is not started again"
            )
            return _ended(None, TerminationReason.ERROR, unsure)
        if state is ContainerState.CREATED:
            refused = await self._start_algorithm(job, name, live)
            if refused is not None:
                return refused
        await self._filter_ahead(ctx)
        ws, limit = ctx.workspace, self.kit.disk_limit(job)
        try:
            async with self.kit.disk_watch(ws.data, limit) as over:
                exit_, interrupt = await self._await_algorithm(job, name, live, stop, over)
        except DockerUnavailableError:
            # Docker went away under a running algorithm: when it comes back the job
            # resumes here and reads what became of the container.
            self._docker_lost.setdefault(job.job_id, time.time())
            raise
        await live.close()
        await asyncio.to_thread(
            move_log,
            live.path,
            ws.algorithm_log,
            ws.published_algorithm_log,
            self.kit.settings.docker.log_max_bytes,
        )
        if resumed and interrupt is None:
            interrupt = interrupt_while_away(exit_, stop.is_set(), job.deadline)
        reason, detail = await self._why_ended(job, exit_, interrupt)
        # What it ran, by content, for the receipt: read before its container goes.
        ended = _ended(exit_, reason, detail, image=await self.kit.runtime.ran_image(name))
        if exit_.lost:
            # Its outputs are where it ran, out of reach: no filter, the logs are published.
            ended = replace(ended, ending=EarlyEnd(reason=reason, detail=detail))
        # The container goes once its exit is written (40 → 50), never before.
        return replace(ended, after_leave=lambda: self.kit.offpath.remove_later(job.job_id, name))

    async def _start_algorithm(self, job: Job, name: str, live: LiveLog) -> Done | None:
        """Start the algorithm's container; the step done (to 50) if the runtime
        refused (a GPU driver it lacks, a device it cannot resolve, its node gone), said in
        one line, with no container left behind. None once it started."""
        try:
            await self.kit.runtime.start(name)
            return None
        except DockerUnavailableError:
            # The request may have reached Docker before it went: the algorithm may run
            # (or have run), and a signal that ends it came from Docker's restart.
            self._start_unanswered.add(job.job_id)
            self._docker_lost.setdefault(job.job_id, time.time())
            raise
        except ContainerError as e:
            await live.close()
            log.warning("job %s: the algorithm container could not start: %s", job.job_id, e)
            why = f"the algorithm container could not start: {e.message}"
            self.kit.offpath.remove_later(job.job_id, name)
            return _ended(None, TerminationReason.ERROR, why)

    async def _why_ended(
        self, job: Job, exit_: ContainerExit, interrupt: Interruption | None
    ) -> tuple[TerminationReason, str]:
        """The algorithm's termination reason, and the sentence where the runtime ended it."""
        if interrupt is Interruption.TIMEOUT:
            await self.kit.store.request_stop(job.job_id, StopRequest.TIME_LIMIT)
        full = await self.kit.disk_full(
            self.kit.context(job).workspace.data, self.kit.disk_limit(job)
        )
        detail = self._killed_under(job, exit_, interrupt)
        if detail:
            return TerminationReason.ERROR, detail
        # A runtime that cannot tell OOM from another SIGKILL (Swarm: exit 137 only) gives
        # no flag: the job ends failed, its exit code 137 kept.
        return algorithm_outcome(exit_, interrupt, disk_full=full), ""

    def _killed_under(self, job: Job, exit_: ContainerExit, interrupt: Interruption | None) -> str:
        """Why the algorithm ended by no doing of its own, where the runtime did it: Docker
        restarted under it, or its node went down. "" when neither."""
        lost_at = self._docker_lost.pop(job.job_id, None)
        if exit_.lost:  # the runtime lost it: its reason names the node
            return f"Job failed: {exit_.reason}"
        if lost_at is not None and killed_by_docker_restart(exit_, interrupt, lost_at):
            return _killed_by_docker(exit_)
        return ""

    async def _algorithm_state(self, name: str) -> ContainerState:
        """The algorithm container's state: created when it was made ahead while fetch
        ran (nothing to ask the runtime), else the runtime's answer."""
        ahead = self.kit.offpath.take(name)
        if ahead is not None and await ahead:
            return ContainerState.CREATED
        return await self.kit.runtime.state(name)

    async def _await_algorithm(
        self,
        job: Job,
        name: str,
        live: LiveLog,
        stop: asyncio.Event,
        disk_full: asyncio.Event | None,
    ) -> tuple[ContainerExit, Interruption | None]:
        """Wait for the algorithm while its output streams live into algorithm.log."""
        recorder = asyncio.ensure_future(live.record(self.kit.runtime.follow_logs(name)))
        try:
            exit_, interrupt = await self.kit.bounded.await_exit(
                name, job.deadline, stop, disk_full
            )
            # The stream ends with the container; a runtime that fails to end it
            # must not hold the job.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(recorder), LOG_DRAIN_SECONDS)
        finally:
            recorder.cancel()
        # Docker's follow can end before a fast container's last lines reach it; the
        # complete log, read once the container has exited, is the authority, and
        # whatever the stream missed is added for the readers and the file.
        complete = self.kit.context(job).workspace.admin_log("algorithm.complete.log")
        limit = self.kit.settings.docker.log_max_bytes
        await self.kit.runtime.logs_to_file(name, complete, limit=limit, append=False)
        await live.catch_up(await asyncio.to_thread(_read_and_remove, complete))
        return exit_, interrupt


def _ended(
    exit_: ContainerExit | None,
    reason: TerminationReason,
    detail: str,
    *,
    image: RanImage | None = None,
) -> Done:
    """What the algorithm did, written with the move to 50: the facts the filter and
    `resolve` read, after a restart too (its end is `termination_reason` until the job's
    final write, which `resolve` decides), and the image it ran, for the receipt."""
    finished = exit_.finished_at if exit_ and exit_.finished_at else time.time()
    return Done(
        {
            "algorithm_finished_at": finished,
            "exit_code": None if exit_ is None else exit_.exit_code,
            "termination_reason": reason,
            "detail": detail,
            **({"algorithm_image": image} if image is not None else {}),
        },
    )


def _killed_by_docker(exit_: ContainerExit) -> str:
    return (
        "Job failed: the Docker engine restarted while the algorithm ran and killed it "
        f"(exit code {exit_.exit_code}); Docker's live-restore keeps jobs running "
        "across its restarts"
    )


def _read_and_remove(path: Path) -> bytes:
    data = path.read_bytes()
    path.unlink()
    return data
