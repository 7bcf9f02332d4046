"""One job's way through its containers, from wherever its status says it is.

Each step can be repeated after a restart: containers have fixed names, a step
removes what an interrupted attempt left, and the status says which step is next.
The final state of a job is written in `_finish` and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from localcompute import containers
from localcompute.containers import JobContext, Stage
from localcompute.docker_runtime import ContainerExit, ContainerSpec, DockerRuntime
from localcompute.errors import (
    ContainerError,
    DockerUnavailableError,
    ImageNotFoundError,
    TransitionRefusedError,
)
from localcompute.models import Job
from localcompute.publish import build_results
from localcompute.settings import Settings
from localcompute.status import JobStatus, StopRequest, TerminationReason
from localcompute.store import JobStore
from localcompute.workspace import Workspace

log = logging.getLogger(__name__)

FETCH_DATA_FAILED = 31
FETCH_ALGORITHM_FAILED = 32


class Interrupt(Enum):
    STOP = "stop"
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class Runtime:
    """What the pipeline needs of the engine: decided once at start-up."""

    instance: str
    user: str
    fetch_network: str
    algorithm_network: str


class Pipeline:
    def __init__(
        self, store: JobStore, docker: DockerRuntime, settings: Settings, runtime: Runtime
    ) -> None:
        self.store = store
        self.docker = docker
        self.settings = settings
        self.runtime = runtime

    def context(self, job: Job) -> JobContext:
        return JobContext(
            job=job,
            workspace=Workspace.of(self.settings.data_dir, job.job_id),
            instance=self.runtime.instance,
            docker=self.settings.docker,
            user=self.runtime.user,
            fetch_network=self.runtime.fetch_network,
            algorithm_network=self.runtime.algorithm_network,
        )

    async def run(self, job: Job, stop: asyncio.Event) -> Job:
        """Take `job` to a final state.

        1. fetch (10/20 → 30): inputs and algorithm into the job folder, the image
           pulled meanwhile; a failure ends the job at 31 or 32.
        2. algorithm (30 → 40 → 50): killed at its deadline or on a stop.
        3. filter (50 → 60): outputs become results.
        4. publish (60 → 70): the results list, then the final status.
        A stop before the algorithm starts goes straight to publish.
        Docker being unreachable propagates: the engine retries the job later.
        """
        if job.stopreq == StopRequest.STOP:
            stop.set()
        try:
            if job.status in (JobStatus.JOB_STARTED, JobStatus.CONFIGURING_VOLUMES):
                job = await self._fetch(job, stop)
            if job.status in (JobStatus.PROVISIONING_SUCCESS, JobStatus.RUNNING_ALGORITHM):
                job = await self._algorithm(job, stop)
            if job.status == JobStatus.FILTERING_RESULTS:
                job = await self._filter(job)
            if job.status == JobStatus.PUBLISHING_RESULTS:
                job = await self._publish(job)
            return job
        except (asyncio.CancelledError, DockerUnavailableError):
            raise
        except Exception as e:
            log.exception("job %s failed in the engine", job.job_id)
            return await self._fail(job, f"Job failed: {type(e).__name__}: {e}")

    # -- steps --------------------------------------------------------------

    async def _fetch(self, job: Job, stop: asyncio.Event) -> Job:
        ctx = self.context(job)
        ws = ctx.workspace
        if job.status == JobStatus.JOB_STARTED:
            job = await self.store.transition(
                job.job_id, JobStatus.CONFIGURING_VOLUMES, fetch_started_at=time.time()
            )
            ctx = self.context(job)
        if stop.is_set():
            return await self._skip_to_publish(job, TerminationReason.STOPPED)
        spec = containers.fetch_container(ctx)
        await self.docker.remove(spec.name)
        await asyncio.to_thread(ws.prepare, containers.fetch_document(ctx))
        pull = asyncio.ensure_future(self._pull_algorithm_image(job))
        try:
            exit_, interrupt = await self._run_container(
                spec, limit=self.settings.docker.fetch_timeout, stop=stop
            )
            configure_log = ws.admin_log("configure.log")
            await self.docker.logs_to_file(
                spec.name, configure_log, limit=self.settings.docker.log_max_bytes, append=True
            )
            await self.docker.remove(spec.name)
            if interrupt is Interrupt.STOP:
                return await self._skip_to_publish(job, TerminationReason.STOPPED)
            if interrupt is Interrupt.TIMEOUT:
                note = f"fetch did not finish within {self.settings.docker.fetch_timeout:g} s"
                return await self._provisioning_failed(
                    job, JobStatus.DATA_PROVISIONING_FAILED, note
                )
            if exit_.exit_code == FETCH_ALGORITHM_FAILED:
                return await self._provisioning_failed(
                    job, JobStatus.ALGORITHM_PROVISIONING_FAILED, ""
                )
            if exit_.exit_code != 0:
                note = (
                    ""
                    if exit_.exit_code == FETCH_DATA_FAILED
                    else (f"fetch ended with exit code {exit_.exit_code}")
                )
                return await self._provisioning_failed(
                    job, JobStatus.DATA_PROVISIONING_FAILED, note
                )
            pull_error = await pull
        finally:
            pull.cancel()
        if pull_error is not None:
            return await self._provisioning_failed(
                job, JobStatus.ALGORITHM_PROVISIONING_FAILED, pull_error
            )
        return await self.store.transition(
            job.job_id, JobStatus.PROVISIONING_SUCCESS, fetch_finished_at=time.time()
        )

    async def _pull_algorithm_image(self, job: Job) -> str | None:
        """None when the algorithm's image is ready, else why it is not."""
        ref = job.spec.algorithm.image_ref
        try:
            await self.docker.ensure_image(ref, self.settings.docker.pull_policy)
        except ImageNotFoundError as e:
            return f"algorithm image {ref} is not available: {e.message}"
        return None

    async def _algorithm(self, job: Job, stop: asyncio.Event) -> Job:
        ctx = self.context(job)
        env = self.settings.environment(job.environment)
        if env is None:
            return await self._fail(job, f"environment {job.environment} is no longer configured")
        name = ctx.name(Stage.ALGORITHM)
        if job.status == JobStatus.PROVISIONING_SUCCESS:
            if stop.is_set():
                return await self._skip_to_publish(job, TerminationReason.STOPPED)
            try:
                await self.docker.create(containers.algorithm_container(ctx, env))
            except ImageNotFoundError as e:
                note = f"algorithm image {job.spec.algorithm.image_ref}: {e.message}"
                return await self._provisioning_failed(
                    job, JobStatus.ALGORITHM_PROVISIONING_FAILED, note
                )
            started = time.time()
            job = await self.store.transition(
                job.job_id,
                JobStatus.RUNNING_ALGORITHM,
                algorithm_started_at=started,
                deadline=started + job.max_duration,
            )
            await self.docker.start(name)
        else:
            try:
                state = await self.docker.state(name)
            except ContainerError:
                return await self._algorithm_ended(
                    job,
                    None,
                    TerminationReason.ERROR,
                    "Job failed: the algorithm container was lost while the server was down",
                )
            if state.get("Status") == "created":
                await self.docker.start(name)
        exit_, interrupt = await self._await_exit(name, job.deadline, stop)
        await self.docker.logs_to_file(
            name,
            ctx.workspace.algorithm_log,
            limit=self.settings.docker.log_max_bytes,
            append=True,
        )
        await self.docker.remove(name)
        if interrupt is Interrupt.TIMEOUT:
            await self.store.request_stop(job.job_id, StopRequest.TIME_LIMIT)
        reason = algorithm_outcome(exit_, interrupt)
        return await self._algorithm_ended(job, exit_, reason, "")

    async def _algorithm_ended(
        self, job: Job, exit_: ContainerExit | None, reason: TerminationReason, detail: str
    ) -> Job:
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

    async def _filter(self, job: Job) -> Job:
        ctx = self.context(job)
        ws = ctx.workspace
        spec = containers.filter_container(ctx)
        await self.docker.remove(spec.name)
        await asyncio.to_thread(ws.reset_results)
        exit_, interrupt = await self._run_container(
            spec, limit=self.settings.docker.filter_timeout, stop=None
        )
        await self.docker.logs_to_file(
            spec.name,
            ws.admin_log("filter.log"),
            limit=self.settings.docker.log_max_bytes,
            append=False,
        )
        await self.docker.remove(spec.name)
        fields: dict[str, Any] = {}
        if interrupt is not None or exit_.exit_code != 0:
            # Without a complete filter run no output may leave: publish the logs only.
            await asyncio.to_thread(ws.reset_results)
            why = "timed out" if interrupt else f"ended with exit code {exit_.exit_code}"
            fields = {
                "termination_reason": TerminationReason.ERROR,
                "detail": f"Job failed: the output filter {why}; outputs withheld",
            }
        now = time.time()
        return await self.store.transition(
            job.job_id,
            JobStatus.PUBLISHING_RESULTS,
            filter_finished_at=now,
            publish_started_at=now,
            **fields,
        )

    async def _publish(self, job: Job) -> Job:
        ws = self.context(job).workspace
        results = await asyncio.to_thread(
            build_results,
            ws,
            algorithm_ran=job.algorithm_started_at is not None,
            outputs=job.spec.publish_outputs,
            algorithm_log=job.spec.publish_algorithm_log,
        )
        await self.store.set_results(job.job_id, results)
        await asyncio.to_thread(ws.scrub)
        reason = job.termination_reason or TerminationReason.COMPLETED
        return await self._finish(job, JobStatus.JOB_COMPLETED, reason, job.detail)

    async def _skip_to_publish(self, job: Job, reason: TerminationReason) -> Job:
        job = await self.store.transition(
            job.job_id,
            JobStatus.PUBLISHING_RESULTS,
            termination_reason=reason,
            publish_started_at=time.time(),
        )
        return await self._publish(job)

    async def _provisioning_failed(self, job: Job, status: JobStatus, note: str) -> Job:
        """31 or 32: the configure log (with `note`) is the result, and the job ends."""
        ws = self.context(job).workspace
        if note:
            await asyncio.to_thread(_append_line, ws.admin_log("configure.log"), note)
        results = await asyncio.to_thread(build_results, ws, algorithm_ran=False)
        await self.store.set_results(job.job_id, results)
        await asyncio.to_thread(ws.scrub)
        return await self._finish(job, status, None, note, fetch_finished_at=time.time())

    async def _fail(self, job: Job, detail: str) -> Job:
        """The system failed under the job: end it, with whatever logs there are."""
        ws = self.context(job).workspace
        try:
            if await asyncio.to_thread(ws.adminlogs.exists):
                results = await asyncio.to_thread(
                    build_results, ws, algorithm_ran=job.algorithm_started_at is not None
                )
                await self.store.set_results(job.job_id, results)
            await asyncio.to_thread(ws.scrub)
        except Exception:
            log.exception("job %s: publishing its logs after a failure failed too", job.job_id)
        return await self._finish(job, JobStatus.JOB_COMPLETED, TerminationReason.ERROR, detail)

    async def finish_waiting(self, job: Job) -> Job:
        """A job stopped before it got a slot ends without running."""
        return await self._finish(job, JobStatus.JOB_COMPLETED, TerminationReason.STOPPED, "")

    async def _finish(
        self,
        job: Job,
        status: JobStatus,
        reason: TerminationReason | None,
        detail: str,
        **fields: object,
    ) -> Job:
        """The one place where a job's final state is written; a cancellation cannot cut it."""
        if reason is None:
            text = status.text
        elif reason is TerminationReason.ERROR and detail:
            text = detail
        else:
            text = reason.text
        now = time.time()
        write = self.store.transition(
            job.job_id,
            status,
            status_text=text,
            termination_reason=reason,
            detail=detail,
            date_finished=now,
            **(fields or {"publish_finished_at": now}),
        )
        try:
            return await asyncio.shield(write)
        except TransitionRefusedError:
            return await self.store.get(job.job_id)

    # -- containers ---------------------------------------------------------

    async def _run_container(
        self, spec: ContainerSpec, *, limit: float, stop: asyncio.Event | None
    ) -> tuple[ContainerExit, Interrupt | None]:
        await self.docker.create(spec)
        await self.docker.start(spec.name)
        return await self._await_exit(spec.name, time.time() + limit, stop)

    async def _await_exit(
        self, name: str, deadline: float | None, stop: asyncio.Event | None
    ) -> tuple[ContainerExit, Interrupt | None]:
        """Wait for the container; at the deadline or on a stop, SIGTERM then SIGKILL it."""
        waiter = asyncio.ensure_future(self.docker.wait(name))
        stopper = asyncio.ensure_future(stop.wait()) if stop is not None else None
        try:
            pending = {waiter} | ({stopper} if stopper else set())
            timeout = None if deadline is None else max(0.0, deadline - time.time())
            done, _ = await asyncio.wait(
                pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            interrupt: Interrupt | None = None
            if waiter not in done:
                interrupt = Interrupt.STOP if stopper in done else Interrupt.TIMEOUT
                await self.docker.stop(name, self.settings.docker.stop_grace)
            return await waiter, interrupt
        finally:
            waiter.cancel()
            if stopper is not None:
                stopper.cancel()


def algorithm_outcome(exit_: ContainerExit, interrupt: Interrupt | None) -> TerminationReason:
    """Why the algorithm ended; its exit code is kept beside this, never masked."""
    if interrupt is Interrupt.TIMEOUT:
        return TerminationReason.TIMEOUT
    if interrupt is Interrupt.STOP:
        return TerminationReason.STOPPED
    if exit_.oom_killed:
        return TerminationReason.OOM
    if exit_.exit_code != 0:
        return TerminationReason.FAILED
    return TerminationReason.COMPLETED


def _append_line(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(line.rstrip("\n") + "\n")
