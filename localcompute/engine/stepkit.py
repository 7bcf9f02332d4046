"""What every step of a job works with: the store, the runtime, the settings, the
containers made ahead and removed off the path, and the job's disk limit and watch."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from localcompute.core.models import Job, held_by
from localcompute.core.settings import Settings
from localcompute.engine.bounded_run import BoundedRun
from localcompute.engine.metrics import Metrics
from localcompute.engine.offpath import OffPathContainers
from localcompute.runtime import ContainerRuntime
from localcompute.runtime.containers import JobContext
from localcompute.runtime.quota import DiskQuota
from localcompute.runtime.workspace import Workspace
from localcompute.store import Store

# How often a soft disk quota (the watcher) measures a job's folder.
DISK_WATCH_SECONDS = 0.5


@dataclass(frozen=True)
class ContainerDefaults:
    """What every job container of this server gets, decided once at start-up."""

    instance: str
    user: str


@dataclass
class StepKit:
    store: Store
    runtime: ContainerRuntime
    settings: Settings
    defaults: ContainerDefaults
    metrics: Metrics
    disk: DiskQuota
    offpath: OffPathContainers
    bounded: BoundedRun

    def context(self, job: Job) -> JobContext:
        return JobContext(
            job=job,
            workspace=Workspace.of(self.settings.data_dir, job.job_id),
            instance=self.defaults.instance,
            docker_settings=self.settings.docker,
            user=self.defaults.user,
            download_settings=self.settings.downloads,
            copy_outputs=self.disk.keeps_renamed,
        )

    def disk_limit(self, job: Job) -> int:
        """Bytes the job may write: what the pool gave it."""
        return disk_limit(job, self.settings)

    async def disk_full(self, folder: Path, limit: int) -> bool:
        """Whether what the job wrote reached its quota."""
        return await asyncio.to_thread(self.disk.full, folder, limit)

    @contextlib.asynccontextmanager
    async def disk_watch(self, folder: Path, limit: int) -> AsyncIterator[asyncio.Event | None]:
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


def disk_limit(job: Job, settings: Settings) -> int:
    """Bytes the job may write: what the pool gave it (models.held_by)."""
    env = settings.environment(job.environment)
    held = held_by(job.allocation, env, job.spec.resources)
    return held.disk_bytes or held_by(None, env, job.spec.resources).disk_bytes
