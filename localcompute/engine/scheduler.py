"""Which jobs run: admission from the host pool, one supervised task per admitted job,
reconciliation with the runtime at start-up, and the clean-up a deleted job's end brings.

Admission is event-driven: jobs are admitted when one is submitted and when one
ends (its resources and slot freed). No polling loop is on a job's path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from localcompute.core.errors import DockerUnavailableError, TransitionRefusedError
from localcompute.core.models import Allocation, Job
from localcompute.core.settings import Settings
from localcompute.core.status import JobStatus
from localcompute.engine.pipeline import Pipeline
from localcompute.engine.pool import Pool
from localcompute.engine.steps import stage_at
from localcompute.runtime import ContainerRuntime
from localcompute.runtime.containers import Stage, container_name
from localcompute.runtime.disk import mounted_folders
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
        self._closing = False

    def __repr__(self) -> str:
        return f"<Scheduler running={len(self._tasks)}>"

    @property
    def instance(self) -> str:
        return self.pipeline.defaults.instance

    async def close(self) -> None:
        """Stop watching jobs; their containers run on and are re-attached at the next start."""
        self._closing = True
        tasks = [*self._tasks.values(), *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def is_running(self, job_id: str) -> bool:
        return job_id in self._tasks

    def signal_stop(self, job_id: str) -> None:
        self._stop_event(job_id).set()

    async def wait(self, job_id: str) -> None:
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.shield(task)

    async def remove_files(self, job: Job) -> Job:
        """Remove a finished job's containers, folder and results; the row stays."""
        for stage in Stage:
            await self.runtime.remove(container_name(self.instance, job.job_id, stage))
        await self.pipeline.release_disk(job)
        await asyncio.to_thread(Workspace.of(self.settings.data_dir, job.job_id).remove)
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
        finally:
            self._tasks.pop(job.job_id, None)
            self._stops.pop(job.job_id, None)
            if not self._closing:
                self.in_background(self._after(job.job_id))

    async def _after(self, job_id: str) -> None:
        """A job's task has ended: remove its files if it was deleted, admit the next."""
        try:
            job = await self.store.get(job_id)
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
        """Make Docker agree with the store after a restart.

        A job that holds a slot is resumed from its status (its container
        re-attached when it still runs); a container labelled with this instance
        that belongs to no such job is removed; other instances' are not touched.
        """
        active = {job.job_id: job for job in await self.store.active_jobs()}
        for container in await self.runtime.list_labelled(self.instance):
            job = active.get(container.job_id)
            expected = None if job is None else stage_at(job.status)
            if expected is None or container.stage != expected:
                log.info("removing left-over container %s", container.name)
                await self.runtime.remove(container.name)
        disk = self.pipeline.disk
        for folder in await asyncio.to_thread(mounted_folders, self.settings.data_dir / "jobs"):
            job = active.get(folder.parent.name)
            if job is None:
                log.info("releasing the disk left by job %s", folder.parent.name)
                await asyncio.to_thread(disk.detach, folder, folder.parent.name)
            elif job.status >= JobStatus.PROVISIONING_SUCCESS:
                # Its inputs are fetched: mounted again as they were (after a reboot).
                await asyncio.to_thread(disk.reattach, folder, job.job_id)
        for job in active.values():
            log.info("resuming job %s at %d", job.job_id, job.status)
            self._spawn(job)
        for job in await self.store.pending_deletes():
            log.info("removing the files of deleted job %s", job.job_id)
            await self.remove_files(job)


def _held(allocation: Allocation) -> str:
    cores = f"cores {allocation.cpuset_text}" if allocation.pinned else f"{allocation.cpu:g} CPU"
    gpus = f", GPUs {', '.join(allocation.gpus)}" if allocation.gpus else ""
    return (
        f"{cores}, {allocation.ram_bytes / 1024**3:g} GiB RAM, "
        f"{allocation.disk_bytes / 1024**3:g} GiB disk{gpus}"
    )
