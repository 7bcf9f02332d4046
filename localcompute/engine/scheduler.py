"""Which jobs run: admission from the host pool, one supervised task per admitted job,
reconciliation with the runtime at start-up, and the clean-up a deleted job's end brings.

Admission is event-driven: jobs are admitted when one is submitted and when one
ends (its resources and slot freed). No polling loop is on a job's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any

from localcompute.core.errors import (
    DockerUnavailableError,
    LocalComputeError,
    TransitionRefusedError,
)
from localcompute.core.models import Allocation, Job, JobQuery
from localcompute.core.settings import Settings
from localcompute.core.status import JobStatus, StopRequest
from localcompute.engine import failpoints
from localcompute.engine.deadlines import QueueDeadlines
from localcompute.engine.every import every
from localcompute.engine.pipeline import Pipeline
from localcompute.engine.pool import Pool
from localcompute.engine.steps import stage_at
from localcompute.engine.turns import held_core_seconds
from localcompute.runtime import ContainerRuntime
from localcompute.runtime.containers import Stage, container_name
from localcompute.runtime.workspace import Workspace
from localcompute.store import Store

log = logging.getLogger(__name__)

# How long a job waits before it is tried again while Docker does not answer.
DOCKER_RETRY_SECONDS = 5.0


class Scheduler:
    def __init__(
        self,
        store: Store,
        runtime: ContainerRuntime,
        settings: Settings,
        pipeline: Pipeline,
        pool: Pool,
    ) -> None:
        self.store = store
        self.pool = pool
        self.runtime = runtime
        self.settings = settings
        self.pipeline = pipeline
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stops: dict[str, asyncio.Event] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._removing: set[str] = set()
        self._closing = False
        # Callers of wait() on a job still waiting for a slot, woken when it is admitted
        # or ends without running; `_moves` counts the wakes, so that a caller sees one
        # that happened while it read the job.
        self._slot_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._moves = 0
        # Jobs whose task ended without ending them (the store failed under it): resumed
        # at the next start, not waited for until then.
        self._lost: set[str] = set()
        self._finishing: dict[str, asyncio.Future[Job]] = {}
        self.deadlines = QueueDeadlines()

    def __repr__(self) -> str:
        return f"<Scheduler running={len(self._tasks)}>"

    @property
    def instance(self) -> str:
        return self.pipeline.defaults.instance

    async def close(self) -> None:
        """Stop watching jobs: their algorithms run on and are re-attached at the next
        start; nothing else of this instance stays on the engine. Closing twice is once."""
        if self._closing:
            return
        self._closing = True
        for job_id in list(self._slot_waiters):
            self._wake(job_id)
        tasks = [*self._tasks.values(), *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.pipeline.close()
        await self.remove_helpers()

    def is_running(self, job_id: str) -> bool:
        return job_id in self._tasks

    def signal_stop(self, job_id: str) -> None:
        self._stop_event(job_id).set()

    async def wait(self, job_id: str) -> None:
        """Until the job's task ends. A job still waiting for a slot is waited for, without
        polling, until it is admitted and its task ends, or until it ends without running."""
        while not self._closing:
            task = self._tasks.get(job_id)
            if task is not None:
                await asyncio.shield(task)
                return
            moves = self._moves
            job = await self.store.get(job_id)
            if job.is_final or job_id in self._lost:
                return  # ended, or its task ended without ending it: nothing to wait for
            if moves != self._moves or job_id in self._tasks:
                continue  # it moved while it was read
            # Waiting, or admitted by an admission that has yet to start its task: both
            # are woken when it starts.
            woken = asyncio.get_running_loop().create_future()
            waiters = self._slot_waiters.setdefault(job_id, [])
            waiters.append(woken)
            try:
                await woken
            finally:
                if woken in waiters:  # cancelled before it was woken
                    waiters.remove(woken)
                    if not waiters and self._slot_waiters.get(job_id) is waiters:
                        del self._slot_waiters[job_id]

    def _wake(self, job_id: str) -> None:
        self._moves += 1
        for woken in self._slot_waiters.pop(job_id, []):
            if not woken.done():
                woken.set_result(None)

    async def finish_waiting(self, job: Job, *, expired: bool = False) -> Job:
        """End a job stopped before it got a slot (or `expired` past its queue deadline),
        without running it. Two ends at once (two stops, a stop and its deadline) are one:
        the second waits for the first, so the job is published once."""
        ending = self._finishing.get(job.job_id)
        if ending is None:
            ending = asyncio.ensure_future(self.pipeline.finish_waiting(job, expired=expired))
            self._finishing[job.job_id] = ending
            ending.add_done_callback(lambda _: self._finishing.pop(job.job_id, None))
        try:
            return await asyncio.shield(ending)
        finally:
            self._wake(job.job_id)

    def watch_deadline(self, job_id: str, deadline: float) -> None:
        """End the job at `deadline` if it is still waiting for a slot then."""
        self.deadlines.watch(job_id, deadline)

    async def expire_waiting(self, job_id: str) -> None:
        """A job at its queue deadline: ended unrun if it still waits (admission and
        this race through the store's compare-and-set: exactly one of them moves it)."""
        job = await self.store.get(job_id)
        deadline = job.queue_deadline
        if job.status != JobStatus.WARMING_UP or deadline is None:
            return
        if deadline > time.time():  # watched early (a restart): watch it again
            self.deadlines.watch(job_id, deadline)
            return
        marked = await self.store.expire_waiting(job_id)
        if marked is None:
            return  # admitted meanwhile (it runs), or stopped (its stop ends it)
        job = await self.finish_waiting(marked, expired=True)
        log.info("job %s ended unrun: %s", job_id, job.detail)

    async def deadlines_forever(self) -> None:
        await self.deadlines.run(self.expire_waiting)

    async def remove_files(self, job: Job) -> Job:
        """Remove a finished job's containers, folder and results; the row stays."""
        if job.job_id in self._removing:  # the sweep and the job's own end may meet here
            return await self.store.get(job.job_id)
        self._removing.add(job.job_id)
        try:
            return await self._remove_files(job)
        finally:
            self._removing.discard(job.job_id)

    async def _remove_files(self, job: Job) -> Job:
        for stage in Stage:
            await self.runtime.remove(container_name(self.instance, job.job_id, stage))
        failpoints.hit("delete.after_containers")
        await self.pipeline.release_disk(job)
        await asyncio.to_thread(Workspace.of(self.settings.data_dir, job.job_id).remove)
        failpoints.hit("delete.after_files")
        try:
            return await self.store.mark_removed(job.job_id)
        except TransitionRefusedError:
            return await self.store.get(job.job_id)

    async def admit(self) -> None:
        """Admit every waiting job the pool and the environments' slots allow now."""
        if self._closing:
            return
        for job in await self.store.admit(self.pool):
            allocation = job.allocation
            log.info(
                "job %s admitted in %s: %s",
                job.job_id,
                job.environment,
                "nothing held" if allocation is None else _held(allocation),
            )
            self._spawn(job)

    def _spawn(self, job: Job) -> None:
        task = asyncio.create_task(self._supervise(job), name=f"job-{job.job_id}")
        self._tasks[job.job_id] = task
        self._wake(job.job_id)

    def _stop_event(self, job_id: str) -> asyncio.Event:
        return self._stops.setdefault(job_id, asyncio.Event())

    async def _supervise(self, job: Job) -> None:
        stop = self._stop_event(job.job_id)
        try:
            while not job.is_final:
                try:
                    job = await self.pipeline.run(job, stop)
                except DockerUnavailableError as e:
                    log.warning("job %s waits for Docker: %s", job.job_id, e)
                    await asyncio.sleep(DOCKER_RETRY_SECONDS)
                    job = await self.store.get(job.job_id)
            log.info("job %s ended: %s", job.job_id, job.status_text)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The pipeline ends jobs itself; this is the store failing under it. The job
            # keeps its status and is resumed at the next start.
            log.exception("job %s: the engine lost track of it until the next start", job.job_id)
            self._lost.add(job.job_id)
            self._wake(job.job_id)
        finally:
            self._tasks.pop(job.job_id, None)
            self._stops.pop(job.job_id, None)
            if not self._closing:
                self.in_background(self._after(job.job_id))

    async def _after(self, job_id: str) -> None:
        """A job's task has ended: remove its files if it was deleted, admit the next."""
        try:
            job = await self.store.get(job_id)
            if job.is_final and job.date_finished is not None:
                since = job.fetch_started_at or job.algorithm_started_at
                used = held_core_seconds(job.allocation, since, job.date_finished)
                if self.pool.turns is not None:
                    self.pool.turns.ledger.charge(job.owner, used, job.date_finished)
            if job.is_final and job.delete_requested and not job.removed:
                await self.remove_files(job)
        except Exception:
            log.exception("job %s: removing its files failed; the next start tries again", job_id)
        await self.admit()

    def in_background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def reconcile(self) -> None:
        """Make Docker agree with the store at start-up, then resume every active job
        from its status (its algorithm container re-attached, whatever its state)."""
        active = await self.sweep(resuming=True)
        for job in active:
            log.info("resuming job %s at %d", job.job_id, job.status)
            self._spawn(job)
        for job in await self.store.find(JobQuery(unfinished=True)):
            if job.status != JobStatus.WARMING_UP:
                continue
            if job.stopreq != StopRequest.NONE:
                # Stopped (or past its deadline) while waiting, and the server went down
                # before it was ended: no admission takes it, so it is ended here.
                expired = job.stopreq == StopRequest.TIME_LIMIT
                with contextlib.suppress(TransitionRefusedError):
                    await self.finish_waiting(job, expired=expired)
            elif job.queue_deadline is not None:
                self.deadlines.watch(job.job_id, job.queue_deadline)

    async def sweep(self, *, resuming: bool = False) -> list[Job]:
        """Remove what belongs to no running job: safe while jobs run, so it runs on a
        timer as well as at start-up. Returns the active jobs it read.

        - a container labelled with this instance whose job is not active, or that
          belongs to a step its job has passed (other instances' are not touched);
        - the disk (mount, image) of a job that is not active;
        - the files of deleted jobs whose removal a crash cut short.
        Each list is read before the store, so a job that moves on meanwhile is seen
        at its newer status: what it creates next is not in the list. Mounts of jobs
        past their fetch are mounted again when `resuming` (after a reboot).
        """
        containers = await self.runtime.list_labelled(self.instance)
        folders = await self.runtime.leftover_storage(self.settings.data_dir / "jobs")
        jobs = await self.store.active_jobs()
        active = {job.job_id: job for job in jobs}
        removed = 0
        for container in containers:
            job = active.get(container.job_id)
            if job is not None and not _passed(container.stage, job.status):
                continue
            log.info("removing left-over container %s", container.name)
            await self.runtime.remove(container.name)
            removed += 1
        self.pipeline.metrics.swept("container", removed)
        released = 0
        disk = self.pipeline.disk
        for folder in folders:
            job = active.get(folder.parent.name)
            if job is None:
                log.info("releasing the disk left by job %s", folder.parent.name)
                await asyncio.to_thread(disk.detach, folder, folder.parent.name)
                released += 1
            elif resuming and job.status >= JobStatus.PROVISIONING_SUCCESS:
                # Its inputs are fetched: mounted again as they were (after a reboot).
                await asyncio.to_thread(disk.reattach, folder, job.job_id)
        self.pipeline.metrics.swept("mount", released)
        deleted = 0
        for job in await self.store.pending_deletes():
            if job.job_id in self._tasks:
                continue  # its own task removes them when it ends
            log.info("removing the files of deleted job %s", job.job_id)
            await self.remove_files(job)
            deleted += 1
        self.pipeline.metrics.swept("deleted_job", deleted)
        return jobs

    async def sweep_forever(self) -> None:
        await every(
            self.settings.server.reconcile_interval,
            "the sweep for left-over containers",
            self.sweep,
            first=False,
        )

    async def remove_helpers(self) -> None:
        """On a clean shutdown every container of this instance goes but the algorithms
        of jobs at 40, which the next start re-attaches (or reads the exit of). The
        rest is made again: fetch and filter run again from the start, and an
        algorithm container created ahead for a job before 40 never ran."""
        try:
            running = {
                job.job_id
                for job in await self.store.active_jobs()
                if job.status == JobStatus.RUNNING_ALGORITHM
            }
            for container in await self.runtime.list_labelled(self.instance):
                if container.stage != Stage.ALGORITHM or container.job_id not in running:
                    await self.runtime.remove(container.name)
        except LocalComputeError as e:  # Docker gone, say: the next start's sweep does it
            log.warning("containers left for the next start's sweep: %s", e)


def _passed(stage: str, status: JobStatus) -> bool:
    """Whether a job at `status` is past the step whose container this is. A container
    of a later step is kept: a step may create its container ahead of its status."""
    current = stage_at(status)
    order = list(Stage)
    if current is None:  # publishing: every step is done
        return True
    return stage not in order or order.index(Stage(stage)) < order.index(current)


def _held(allocation: Allocation) -> str:
    cores = f"cores {allocation.cpuset_text}" if allocation.pinned else f"{allocation.cpu:g} CPU"
    gpus = f", GPUs {', '.join(allocation.gpus)}" if allocation.gpus else ""
    return (
        f"{cores}, {allocation.ram_bytes / 1024**3:g} GiB RAM, "
        f"{allocation.disk_bytes / 1024**3:g} GiB disk{gpus}"
    )
