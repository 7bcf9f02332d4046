"""One job's way through its containers, as a table of steps, from wherever its status says.

The runner walks the table (steps.py) in order and skips what the status says is done,
so a job resumed after a restart goes on from its step. It makes every move the table
says: into a step's status as the step begins (the algorithm asks for its 40 itself, at
the moment between its container's create and start), and out of it with what the step
learnt (`Done`). A step only does its work and returns that, or an `EarlyEnd`.
`outcome.resolve` is the one place that turns what happened into the job's outcome, and
`_finish` the one place that writes it: awaited to the end even when the job's task is
cancelled, so the store never closes beneath it. The steps are fetch_step.py, algorithm_step.py
and filter_step.py, and what they share stepkit.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from localcompute.core.errors import (
    DockerUnavailableError,
    TransitionRefusedError,
)
from localcompute.core.models import Job
from localcompute.core.settings import Settings
from localcompute.core.signing import Key
from localcompute.core.status import JobStatus, StopRequest, TerminationReason
from localcompute.engine import failpoints
from localcompute.engine.algorithm_step import AlgorithmStep
from localcompute.engine.bounded_run import BoundedRun
from localcompute.engine.fetch_step import FetchStep
from localcompute.engine.filter_step import FilterStep
from localcompute.engine.livelog import LiveLog
from localcompute.engine.metrics import Metrics
from localcompute.engine.offpath import OffPathContainers
from localcompute.engine.outcome import (
    EarlyEnd,
    FinalOutcome,
    resolve,
)
from localcompute.engine.publish import build_results
from localcompute.engine.receipts import Receipts
from localcompute.engine.stepkit import ContainerDefaults, StepKit
from localcompute.engine.steps import STEPS, Done, Moves
from localcompute.runtime import (
    ContainerRuntime,
)
from localcompute.runtime.containers import JobContext, Stage
from localcompute.runtime.quota import DiskQuota, WatchQuota
from localcompute.store import Store

log = logging.getLogger(__name__)

STOPPED_WAITING = "stopped before it started: it was waiting for a free slot"

StepRun = Callable[[Job, asyncio.Event, Moves], Awaitable[Done | EarlyEnd]]


class Pipeline:
    def __init__(
        self,
        store: Store,
        runtime: ContainerRuntime,
        settings: Settings,
        defaults: ContainerDefaults,
        metrics: Metrics | None = None,
        disk: DiskQuota | None = None,
        key: Key | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.disk: DiskQuota = disk or WatchQuota()
        # A pipeline made without the provider's key (a test's) signs with one of its own.
        self.receipts = Receipts(key or Key.random(), settings, self.disk)
        self.store = store
        self.runtime = runtime
        self.settings = settings
        self.defaults = defaults
        self.bounded = BoundedRun(runtime, settings.docker)
        self.offpath = OffPathContainers(runtime)
        self.kit = StepKit(
            store, runtime, settings, defaults, self.metrics, self.disk, self.offpath, self.bounded
        )
        self.algorithm = AlgorithmStep(self.kit)
        self.fetch = FetchStep(self.kit, self.algorithm.provision)
        self.filter = FilterStep(self.kit)
        self._steps: dict[Stage, StepRun] = {
            Stage.FETCH: self.fetch.run,
            Stage.ALGORITHM: self.algorithm.run,
            Stage.FILTER: self.filter.run,
        }

    @property
    def live_logs(self) -> dict[str, LiveLog]:
        """The output of every algorithm running now, for readers that follow it live."""
        return self.algorithm.live_logs

    async def close(self) -> None:
        await self.offpath.close()

    def context(self, job: Job) -> JobContext:
        return self.kit.context(job)

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
        ending: EarlyEnd | None = None
        try:
            for step in STEPS:
                if job.status not in step.runs_from:
                    continue
                moves = Moves(self.store, step, job)
                if not step.enters_itself:
                    job = await moves.enter()
                result = await self._steps[step.stage](job, stop, moves)
                job = moves.job  # as the step's own move (the algorithm's 40) left it
                if isinstance(result, EarlyEnd):
                    ending = result
                    break
                job = await moves.leave(result)
                if result.after_leave is not None:
                    result.after_leave()
                if result.ending is not None:
                    ending = result.ending
                    break
            return await self._publish(job, ending)
        except (asyncio.CancelledError, DockerUnavailableError):
            raise
        except Exception as e:
            log.exception("job %s failed in the engine", job.job_id)
            failed = EarlyEnd(
                reason=TerminationReason.ERROR, detail=f"Job failed: {type(e).__name__}: {e}"
            )
            return await self._publish(job, failed)

    # -- steps: each does its work and returns what it learnt, or an EarlyEnd -----

    # -- the end: publish what there is, then the one final write ---------------

    async def _publish(self, job: Job, ending: EarlyEnd | None) -> Job:
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
                # Signed before the data folder goes: it names what the job read too.
                receipt = await asyncio.to_thread(self.receipts.write, ws, job, outcome, results)
                await self.store.set_results(job.job_id, [*results, receipt])
            await asyncio.to_thread(ws.scrub)
            if job.status != JobStatus.WARMING_UP:  # one that never ran had no disk
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

    async def finish_waiting(self, job: Job, *, expired: bool = False) -> Job:
        """A job stopped before it got a slot, or `expired` past its queue deadline,
        ends without running: its configure.log says so, and it is published like any
        other (its logs and its receipt)."""
        ws = self.context(job).workspace
        if expired:
            waited = time.time() - job.date_created
            line = (
                f"expired in the queue: it waited {waited:.0f} s for a free slot, past its "
                f"queue deadline of {job.spec.queue_max_wait or 0:g} s, and never ran"
            )
            ending = EarlyEnd(reason=TerminationReason.QUEUE_EXPIRED, detail=line, logged=True)
        else:
            line, ending = STOPPED_WAITING, EarlyEnd(reason=TerminationReason.STOPPED)

        def say_so() -> None:
            ws.adminlogs.mkdir(parents=True, exist_ok=True)
            _append_line(ws.admin_log("configure.log"), line)

        await asyncio.to_thread(say_so)
        if expired:
            self.metrics.deadline_hit(job.environment)
        return await self._publish(job, ending)

    async def _finish(self, job: Job, outcome: FinalOutcome) -> Job:
        """The one place where a job's final state is written.

        The write runs to its end even when this task is cancelled: the
        cancellation waits for it, so the engine never closes the store beneath it.
        """
        self.algorithm.forget(job.job_id)
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


def _append_line(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(line.rstrip("\n") + "\n")
