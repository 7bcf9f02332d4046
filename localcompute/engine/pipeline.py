"""One job's way through its containers, as a table of steps, from wherever its status says.

Each step does its work and returns what happened; the runner walks the table in
order and skips what the status says is done, so a job resumed after a restart
goes on from its step. `outcome.resolve` is the one place that turns what happened
into the job's outcome, and `_finish` the one place that writes it: awaited to the
end even when the job's task is cancelled, so the store never closes beneath it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from localcompute.core.errors import (
    ContainerError,
    DockerUnavailableError,
    ImageNotFoundError,
    TransitionRefusedError,
)
from localcompute.core.models import Job
from localcompute.core.settings import EnvironmentSettings, Settings
from localcompute.core.status import JobStatus, StopRequest, TerminationReason
from localcompute.engine import failpoints
from localcompute.engine.livelog import LiveLog, move_log
from localcompute.engine.metrics import Metrics
from localcompute.engine.offpath import OffPath
from localcompute.engine.outcome import (
    Ending,
    Interrupt,
    Outcome,
    algorithm_outcome,
    fetch_ending,
    first_failure,
    interrupt_while_away,
    killed_by_docker_restart,
    resolve,
)
from localcompute.engine.publish import build_results
from localcompute.engine.steps import STEPS
from localcompute.engine.watch import ContainerWatch
from localcompute.runtime import ContainerExit, ContainerRuntime, ContainerState, containers
from localcompute.runtime.containers import JobContext, Stage
from localcompute.runtime.quota import DiskQuota, WatchQuota
from localcompute.runtime.workspace import Workspace
from localcompute.store import Store

log = logging.getLogger(__name__)

# How long the algorithm's log stream may take to end after the container did.
LOG_DRAIN_SECONDS = 30.0
# How often a soft disk quota (the watcher) measures a job's folder.
DISK_WATCH_SECONDS = 0.5


@dataclass(frozen=True)
class ContainerDefaults:
    """What every job container of this server gets, decided once at start-up."""

    instance: str
    user: str


StepRun = Callable[[Job, asyncio.Event], Awaitable["Job | Ending"]]


class Pipeline:
    def __init__(
        self,
        store: Store,
        runtime: ContainerRuntime,
        settings: Settings,
        defaults: ContainerDefaults,
        metrics: Metrics | None = None,
        disk: DiskQuota | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.disk: DiskQuota = disk or WatchQuota()
        self.store = store
        self.runtime = runtime
        self.settings = settings
        self.defaults = defaults
        self.watch = ContainerWatch(runtime, settings.docker)
        self.offpath = OffPath(runtime)
        # The output of every algorithm running now, for readers that follow it live.
        self.live_logs: dict[str, LiveLog] = {}
        # Job id → when Docker stopped answering while its algorithm ran.
        self._docker_lost: dict[str, float] = {}
        self._steps: dict[Stage, StepRun] = {
            Stage.FETCH: self._fetch,
            Stage.ALGORITHM: self._algorithm,
            Stage.FILTER: self._filter,
        }

    async def close(self) -> None:
        await self.offpath.close()

    def context(self, job: Job) -> JobContext:
        return JobContext(
            job=job,
            workspace=Workspace.of(self.settings.data_dir, job.job_id),
            instance=self.defaults.instance,
            docker_settings=self.settings.docker,
            user=self.defaults.user,
        )

    async def run(self, job: Job, stop: asyncio.Event) -> Job:
        """Take `job` to a final state.

        1. fetch (10/20 → 30): inputs and algorithm into the job folder, the image
           pulled meanwhile; a failure ends the job at 31 or 32.
        2. algorithm (30 → 40 → 50): killed at its deadline or on a stop.
        3. filter (50 → 60): outputs become results; a stop kills it too.
        4. publish (60 → 70): the results list, then the one final write.
        A stop before the algorithm starts goes straight to publish. Docker being
        unreachable propagates: the engine retries the job later from its status.
        """
        if job.stopreq == StopRequest.STOP:
            stop.set()
        ending: Ending | None = None
        try:
            for step in STEPS:
                if job.status in step.runs_from:
                    result = await self._steps[step.stage](job, stop)
                    if isinstance(result, Ending):
                        ending = result
                        break
                    job = result
            return await self._publish(job, ending)
        except (asyncio.CancelledError, DockerUnavailableError):
            raise
        except Exception as e:
            log.exception("job %s failed in the engine", job.job_id)
            failed = Ending(
                reason=TerminationReason.ERROR, detail=f"Job failed: {type(e).__name__}: {e}"
            )
            return await self._publish(job, failed)

    # -- steps: each does its work and returns the job moved on, or an Ending ---

    async def _fetch(self, job: Job, stop: asyncio.Event) -> Job | Ending:
        resumed = job.status == JobStatus.CONFIGURING_VOLUMES
        if not resumed:
            job = await self.store.transition(
                job.job_id, JobStatus.CONFIGURING_VOLUMES, fetch_started_at=time.time()
            )
        if stop.is_set():
            return Ending(reason=TerminationReason.STOPPED)
        ctx = self.context(job)
        ws = ctx.workspace
        # A fetch left by a crash is run again from a clean folder: it only reads
        # sources and writes the job's data, so running it twice is safe (the
        # algorithm is never run twice). The one left behind may still be running and
        # writing: it goes before the folder is cleaned, not after.
        spec = containers.fetch_container(ctx)
        if resumed:
            await self.runtime.remove(spec.name)
        limit = self.disk_limit(job)

        def make_data(folder: Path) -> None:
            self.disk.attach(folder, limit, job.job_id)

        await asyncio.to_thread(ws.prepare, containers.fetch_document(ctx), make_data)
        pull = asyncio.ensure_future(self._provision_algorithm(job))
        try:
            async with self._disk_watch(ws.data, limit) as over:
                exit_, interrupt = await self.watch.run(
                    spec,
                    limit=self.settings.docker.fetch_timeout,
                    stop=stop,
                    log_to=ws.admin_log("configure.log"),
                    append=True,
                    disk_full=over,
                )
            full = exit_.exit_code != 0 and await self._disk_full(ws.data, limit)
            if exit_.lost:
                self.offpath.remove_later(job.job_id, spec.name)
                return Ending(reason=TerminationReason.ERROR, detail=f"Job failed: {exit_.reason}")
            ending = fetch_ending(
                exit_,
                interrupt,
                self.settings.docker.fetch_timeout,
                disk_full=full,
                disk_limit=limit,
            )
            self.offpath.remove_later(job.job_id, spec.name)
            if ending is not None:
                if ending.status != JobStatus.JOB_COMPLETED and not ending.detail:
                    fetch_log = await asyncio.to_thread(
                        _read_text, ctx.workspace.admin_log("configure.log")
                    )
                    ending = replace(ending, detail=first_failure(fetch_log), logged=True)
                return ending
            pull_error = await pull
        finally:
            pull.cancel()
        if pull_error is not None:
            return Ending(JobStatus.ALGORITHM_PROVISIONING_FAILED, detail=pull_error)
        return await self.store.transition(
            job.job_id, JobStatus.PROVISIONING_SUCCESS, fetch_finished_at=time.time()
        )

    def disk_limit(self, job: Job) -> int:
        """Bytes the job may write on the host: what the pool gave it."""
        if job.allocation is not None and job.allocation.disk_bytes:
            return job.allocation.disk_bytes
        env = self.settings.environment(job.environment)
        return int((env.disk_gb if env else 1) * 1024**3)

    async def _disk_full(self, folder: Path, limit: int) -> bool:
        """Whether what the job wrote reached its quota."""
        return await asyncio.to_thread(self.disk.full, folder, limit)

    @contextlib.asynccontextmanager
    async def _disk_watch(self, folder: Path, limit: int) -> AsyncIterator[asyncio.Event | None]:
        """Under a soft quota: an event set when `folder` passes `limit`, measured every
        DISK_WATCH_SECONDS while the block runs. Under a hard one the kernel enforces it."""
        if self.disk.hard:
            yield None
            return
        over = asyncio.Event()

        async def watch() -> None:
            while True:
                if await asyncio.to_thread(self.disk.full, folder, limit):
                    over.set()
                    return
                await asyncio.sleep(DISK_WATCH_SECONDS)

        watcher = asyncio.ensure_future(watch())
        try:
            yield over
        finally:
            watcher.cancel()

    async def _provision_algorithm(self, job: Job) -> str | None:
        """While fetch runs: pull the algorithm's image, then create its container ahead.
        None when the image is ready, else why it is not."""
        ref = job.spec.algorithm.image_ref
        start = time.monotonic()
        try:
            await self.runtime.ensure_image(ref, self.settings.docker.pull_policy)
        except ImageNotFoundError as e:
            return f"algorithm image {ref} is not available: {e.message}"
        self.metrics.pulled(time.monotonic() - start)
        env = self.settings.environment(job.environment)
        if env is not None:
            ctx = self.context(job)
            self.offpath.create_ahead(job.job_id, containers.algorithm_container(ctx, env))
        return None

    async def _algorithm(self, job: Job, stop: asyncio.Event) -> Job | Ending:
        ctx = self.context(job)
        env = self.settings.environment(job.environment)
        if env is None:
            return Ending(
                reason=TerminationReason.ERROR,
                detail=f"environment {job.environment} is no longer configured",
            )
        # Open to readers before the job says "Running algorithm": a client that starts
        # following when it sees 40 must find the log, not a 404.
        ws = ctx.workspace
        live = await LiveLog.create(ws.live_algorithm_log, self.settings.docker.log_max_bytes)
        self.live_logs[job.job_id] = live
        try:
            return await self._run_algorithm(job, ctx, env, live, stop)
        finally:
            self.live_logs.pop(job.job_id, None)
            await live.close()
            # Moved into algorithm.log when the algorithm ran; else nothing to keep.
            await asyncio.to_thread(live.path.unlink, missing_ok=True)

    async def _run_algorithm(
        self,
        job: Job,
        ctx: JobContext,
        env: EnvironmentSettings,
        live: LiveLog,
        stop: asyncio.Event,
    ) -> Job | Ending:
        """Create, start and await the algorithm, or carry on with the container Docker has.

        A container that exists is continued whatever its state: created is started
        (never made again), running is re-attached, exited is carried on to the filter.
        So the algorithm runs at most once, and is lost only when Docker has no trace
        of it. The container goes only after its exit is written (40 → 50).
        """
        name = ctx.name(Stage.ALGORITHM)
        state = await self._algorithm_state(name)
        resumed = state in (ContainerState.RUNNING, ContainerState.EXITED)
        if job.status == JobStatus.PROVISIONING_SUCCESS:
            if stop.is_set():
                await self.runtime.remove(name)
                return Ending(reason=TerminationReason.STOPPED)
            if state is ContainerState.MISSING:
                try:
                    await self.runtime.create(containers.algorithm_container(ctx, env))
                except ImageNotFoundError as e:
                    note = f"algorithm image {job.spec.algorithm.image_ref}: {e.message}"
                    return Ending(JobStatus.ALGORITHM_PROVISIONING_FAILED, detail=note)
                state = ContainerState.CREATED
            job = await self.store.transition(
                job.job_id, JobStatus.RUNNING_ALGORITHM, algorithm_started_at=time.time()
            )
        if state is ContainerState.MISSING:
            lost = "Job failed: the algorithm container was lost while the server was down"
            return await self._algorithm_ended(job, None, TerminationReason.ERROR, lost)
        if state is ContainerState.CREATED:
            refused = await self._start_algorithm(job, name, live)
            if refused is not None:
                return refused
        # The filter's container is made while the algorithm runs.
        self.offpath.create_ahead(job.job_id, containers.filter_container(ctx))
        ws, limit = ctx.workspace, self.disk_limit(job)
        try:
            async with self._disk_watch(ws.data, limit) as over:
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
            self.settings.docker.log_max_bytes,
        )
        if resumed and interrupt is None:
            interrupt = interrupt_while_away(exit_, stop.is_set(), job.deadline)
        reason, detail = await self._why_ended(job, exit_, interrupt)
        ended = await self._algorithm_ended(job, exit_, reason, detail)
        self.offpath.remove_later(job.job_id, name)
        if exit_.lost:
            # Its outputs are where it ran, out of reach: no filter, the logs are published.
            return Ending(reason=reason, detail=detail)
        return ended

    async def _start_algorithm(self, job: Job, name: str, live: LiveLog) -> Job | None:
        """Start the algorithm's container; the job moved on (40 → 50) if the runtime
        refused (a GPU driver it lacks, a device it cannot resolve, its node gone), said in
        one line, with no container left behind. None once it started."""
        try:
            await self.runtime.start(name)
            return None
        except ContainerError as e:
            await live.close()
            log.warning("job %s: the algorithm container could not start: %s", job.job_id, e)
            why = f"the algorithm container could not start: {e.message}"
            ended = await self._algorithm_ended(job, None, TerminationReason.ERROR, why)
            self.offpath.remove_later(job.job_id, name)
            return ended

    async def _why_ended(
        self, job: Job, exit_: ContainerExit, interrupt: Interrupt | None
    ) -> tuple[TerminationReason, str]:
        """The algorithm's termination reason, and the sentence where the runtime ended it."""
        if interrupt is Interrupt.TIMEOUT:
            await self.store.request_stop(job.job_id, StopRequest.TIME_LIMIT)
        full = await self._disk_full(self.context(job).workspace.data, self.disk_limit(job))
        detail = self._killed_under(job, exit_, interrupt)
        if detail:
            return TerminationReason.ERROR, detail
        # A runtime that cannot tell OOM from another SIGKILL (Swarm: exit 137 only) gives
        # no flag: the job ends failed, its exit code 137 kept.
        return algorithm_outcome(exit_, interrupt, disk_full=full), ""

    def _killed_under(self, job: Job, exit_: ContainerExit, interrupt: Interrupt | None) -> str:
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
        ahead = self.offpath.take(name)
        if ahead is not None and await ahead:
            return ContainerState.CREATED
        return await self.runtime.state(name)

    async def _await_algorithm(
        self,
        job: Job,
        name: str,
        live: LiveLog,
        stop: asyncio.Event,
        disk_full: asyncio.Event | None,
    ) -> tuple[ContainerExit, Interrupt | None]:
        """Wait for the algorithm while its output streams live into algorithm.log."""
        recorder = asyncio.ensure_future(live.record(self.runtime.follow_logs(name)))
        try:
            exit_, interrupt = await self.watch.await_exit(name, job.deadline, stop, disk_full)
            # The stream ends with the container; a runtime that fails to end it
            # must not hold the job.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(recorder), LOG_DRAIN_SECONDS)
        finally:
            recorder.cancel()
        # Docker's follow can end before a fast container's last lines reach it; the
        # complete log, read once the container has exited, is the authority, and
        # whatever the stream missed is added for the readers and the file.
        complete = self.context(job).workspace.admin_log("algorithm.complete.log")
        limit = self.settings.docker.log_max_bytes
        await self.runtime.logs_to_file(name, complete, limit=limit, append=False)
        await live.catch_up(await asyncio.to_thread(_read_and_remove, complete))
        return exit_, interrupt

    async def _algorithm_ended(
        self, job: Job, exit_: ContainerExit | None, reason: TerminationReason, detail: str
    ) -> Job:
        """40 → 50, recording what the algorithm did: the facts `resolve` reads after a restart."""
        now = time.time()
        finished = exit_.finished_at if exit_ and exit_.finished_at else now
        return await self.store.transition(
            job.job_id,
            JobStatus.FILTERING_RESULTS,
            algorithm_finished_at=finished,
            exit_code=None if exit_ is None else exit_.exit_code,
            termination_reason=reason,
            detail=detail,
            filter_started_at=now,
        )

    async def _filter(self, job: Job, stop: asyncio.Event) -> Job | Ending:
        ws = self.context(job).workspace
        spec = containers.filter_container(self.context(job))
        ahead = self.offpath.take(spec.name)
        if ahead is None:
            resumed = await self._filter_left_behind(job, spec.name, ws)
            if resumed is not None:
                return resumed
        await asyncio.to_thread(ws.reset_results)
        # A stop the algorithm obeyed must not cut the filter of its partial outputs;
        # after an algorithm that ended on its own, a stop ends the filter. What the
        # algorithm did is the recorded fact, not whether the event is already set.
        obeyed = job.termination_reason is TerminationReason.STOPPED
        fresh_stop = asyncio.Event() if obeyed else stop
        exit_, interrupt = await self.watch.run(
            spec,
            limit=self.settings.docker.filter_timeout,
            stop=fresh_stop,
            log_to=ws.admin_log("filter.log"),
            append=False,
            ahead=ahead,
        )
        self.offpath.remove_later(job.job_id, spec.name)
        detail = ""
        if interrupt is not None or exit_.exit_code != 0:
            # Without a complete filter run no output may leave: publish the logs only.
            await asyncio.to_thread(ws.reset_results)
            if interrupt is Interrupt.STOP:
                return Ending(reason=TerminationReason.STOPPED)
            why = (
                "timed out"
                if interrupt
                else exit_.reason
                if exit_.lost
                else f"ended with exit code {exit_.exit_code}"
            )
            detail = f"Job failed: the output filter {why}; outputs withheld"
        return await self._filtered(job, detail)

    async def _filter_left_behind(self, job: Job, name: str, ws: Workspace) -> Job | None:
        """Resumed after a crash. The filter moves the outputs, so once begun it cannot
        run again: a filter still there is awaited (it carries on moving while the server
        is down), and a filter that wrote its manifest finished. Only a filter that began
        and was cut short (Docker itself restarted under it) withholds the outputs.
        None: no filter began, so one runs now."""
        state = await self.runtime.state(name)
        exit_code: int | None = None
        if state is ContainerState.CREATED:  # made ahead, never started: nothing was moved
            await self.runtime.remove(name)
        elif state is not ContainerState.MISSING:
            try:
                exit_ = await asyncio.wait_for(
                    self.runtime.wait(name), self.settings.docker.filter_timeout
                )
                exit_code = exit_.exit_code
            except TimeoutError:
                await self.runtime.stop(name, 0)
            await self.runtime.logs_to_file(
                name,
                ws.admin_log("filter.log"),
                limit=self.settings.docker.log_max_bytes,
                append=False,
            )
            self.offpath.remove_later(job.job_id, name)
        if await asyncio.to_thread(ws.filter_finished) and exit_code in (None, 0):
            return await self._filtered(job, "")
        unstarted = state in (ContainerState.MISSING, ContainerState.CREATED)
        if unstarted and not await asyncio.to_thread(ws.holds_results):
            return None
        await asyncio.to_thread(ws.reset_results)
        why = "was cut short by a restart" if exit_code is None else f"ended with {exit_code}"
        return await self._filtered(job, f"Job failed: the output filter {why}; outputs withheld")

    async def _filtered(self, job: Job, detail: str) -> Job:
        now = time.time()
        return await self.store.transition(
            job.job_id,
            JobStatus.PUBLISHING_RESULTS,
            filter_finished_at=now,
            publish_started_at=now,
            **({"detail": detail} if detail else {}),
        )

    # -- the end: publish what there is, then the one final write ---------------

    async def _publish(self, job: Job, ending: Ending | None) -> Job:
        """Publish the results (or just the logs), then write the outcome `resolve` decides."""
        outcome = resolve(job, ending)
        ws = self.context(job).workspace
        try:
            logged = ending is not None and ending.logged
            if outcome.detail and outcome.status != JobStatus.JOB_COMPLETED and not logged:
                await asyncio.to_thread(_append_line, ws.admin_log("configure.log"), outcome.detail)
            if await asyncio.to_thread(ws.adminlogs.exists):
                results = await asyncio.to_thread(
                    build_results,
                    ws,
                    algorithm_ran=job.algorithm_started_at is not None,
                    outputs=job.spec.publish_outputs and outcome.status == JobStatus.JOB_COMPLETED,
                    algorithm_log=job.spec.publish_algorithm_log,
                )
                await self.store.set_results(job.job_id, results)
            await asyncio.to_thread(ws.scrub)
            await self.release_disk(job)
            failpoints.hit("publish.before_final")
        except Exception:
            if ending is None or ending.reason is not TerminationReason.ERROR:
                raise
            # Already failing: what logs there are could not be published either.
            log.exception("job %s: publishing its logs after a failure failed too", job.job_id)
        return await self._finish(job, outcome)

    async def release_disk(self, job: Job) -> None:
        """The job's data folder goes, and whatever enforced its quota (a mount, an image,
        a project limit); on failure the next start's reconciliation tries again."""
        ws = self.context(job).workspace
        try:
            await asyncio.to_thread(self.disk.detach, ws.data, job.job_id)
        except OSError:
            log.exception("job %s: releasing its disk failed; the next start retries", job.job_id)

    async def finish_waiting(self, job: Job) -> Job:
        """A job stopped before it got a slot ends without running."""
        return await self._finish(job, resolve(job, Ending(reason=TerminationReason.STOPPED)))

    async def _finish(self, job: Job, outcome: Outcome) -> Job:
        """The one place where a job's final state is written.

        The write runs to its end even when this task is cancelled: the
        cancellation waits for it, so the engine never closes the store beneath it.
        """
        self._docker_lost.pop(job.job_id, None)
        # Nothing of a finished job stays on the engine: what was removed off the path
        # is done, and what was made ahead for a step it never reached goes.
        await self.offpath.settle(job.job_id)
        now = time.time()
        phase = (
            "fetch_finished_at"
            if outcome.status != JobStatus.JOB_COMPLETED
            else "publish_finished_at"
        )
        write = asyncio.ensure_future(
            self.store.transition(
                job.job_id,
                outcome.status,
                termination_reason=outcome.reason,
                detail=outcome.detail,
                date_finished=now,
                **({phase: now} if job.status != JobStatus.WARMING_UP else {}),
            )
        )
        try:
            final = await asyncio.shield(write)
        except asyncio.CancelledError:
            await asyncio.wait({write})
            raise
        except TransitionRefusedError:
            return await self.store.get(job.job_id)
        self.metrics.job_finished(final)
        return final


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


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _append_line(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(line.rstrip("\n") + "\n")
