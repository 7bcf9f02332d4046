"""The engine: the library entry point that every API dialect calls.

It opens and closes the store and the container runtime, accepts, stops and
deletes jobs (each a transaction with its preconditions), answers nonces and
result paths, and sweeps expired results. Which jobs run is the scheduler's
business; what a job does, the pipeline's. The engine knows nothing of HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from localcompute import images
from localcompute.core import nonces
from localcompute.core.errors import (
    ConfigError,
    DockerUnavailableError,
    EnvironmentUnavailableError,
    ImageNotFoundError,
    TransitionRefusedError,
)
from localcompute.core.jobspec import JobSpec
from localcompute.core.models import Job, JobQuery, Preconditions
from localcompute.core.settings import Settings
from localcompute.core.signing import Key, provider_key
from localcompute.core.stagekey import StageKey
from localcompute.core.status import JobStatus, StopRequest
from localcompute.engine import failpoints, policy
from localcompute.engine.amounts import Capacity
from localcompute.engine.capacity import capacity as pool_capacity
from localcompute.engine.catalog import Catalog
from localcompute.engine.consumer_limits import HOUR, check_start, running_caps
from localcompute.engine.datadir import DataDirLock
from localcompute.engine.env_probe import probe_environments
from localcompute.engine.envstate import EnvironmentState, pool_totals
from localcompute.engine.events import EventFeed
from localcompute.engine.expiry import expire_results, expiry_loop
from localcompute.engine.health import Check, health_checks
from localcompute.engine.livelog import LiveLog
from localcompute.engine.metrics import Metrics
from localcompute.engine.overview import ConsumerQueue, EnvironmentOverview, Overview
from localcompute.engine.pipeline import Pipeline
from localcompute.engine.pool import Pool
from localcompute.engine.scheduler import Scheduler
from localcompute.engine.stage_files import StageFiles
from localcompute.engine.stepkit import ContainerDefaults, disk_limit
from localcompute.engine.turns import FairTurns, UseLedger, held_core_seconds
from localcompute.runtime import ContainerRuntime
from localcompute.runtime.choice import runtime_for
from localcompute.runtime.pull import must_pull
from localcompute.runtime.quota import DiskQuota, WatchQuota
from localcompute.runtime.workspace import Workspace
from localcompute.store import JobStore, Store
from localcompute.store.readonly import db_path

log = logging.getLogger(__name__)


class Engine:
    """Runs compute jobs as Docker containers and keeps their state in SQLite."""

    def __init__(
        self,
        settings: Settings,
        *,
        runtime: ContainerRuntime | None = None,
        store: Store | None = None,
    ) -> None:
        self.settings = settings
        self.store: Store = store or JobStore(db_path(settings.data_dir))
        self.runtime = runtime or runtime_for(settings)
        self._scheduler: Scheduler | None = None
        self._lock = DataDirLock(settings.data_dir)
        self.metrics = Metrics()
        # Every status change, for the event streams (the dashboard's, a consumer's).
        self.events = EventFeed(self.store)
        self.cpu_types: dict[str, str] = {}
        limits = settings.limits
        # Each consumer's recent use of the pool, for fair turns: rebuilt from the store
        # at start, charged as jobs end.
        self.ledger = UseLedger(limits.fair_share_half_life)
        self.turns = FairTurns(
            self.ledger,
            weight=lambda owner: limits.for_address(owner).weight,
            caps=lambda owner, env: running_caps(limits, settings.environment(env), owner),
        )
        self.pool = Pool(Capacity((), 0, 0, ()), settings.environment)  # measured at start
        self.disk: DiskQuota = WatchQuota()  # chosen at start
        # Environment id → why it cannot run jobs here (its GPUs, probed at start).
        self.unavailable: dict[str, str] = {}
        # What a node without this server's disk downloads and uploads (known at start).
        self.stage_files: StageFiles | None = None
        # The provider's datasets and algorithms: read at start unless handed in.
        self.catalog: Catalog | None = None
        # The provider's key, which signs every job's receipt: loaded at start unless
        # handed in (the server hands in the one it answers GET / with).
        self.key: Key | None = None

    def __repr__(self) -> str:
        return f"<Engine {self.settings.data_dir} {self._scheduler!r}>"

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        """Lock the data folder, open the store and Docker, check the helper image,
        reconcile, admit."""
        failpoints.armed()  # a misspelt failpoint fails the start, not silently the test
        await self.claim_data_dir()
        try:
            if self.catalog is None:
                self.catalog = await asyncio.to_thread(Catalog.load, self.settings)
            nodes = await self.runtime.resources(self.settings.data_dir)
            if not nodes:
                raise ConfigError("the runtime offers no node to run jobs on")
            self.pool = Pool(
                [pool_capacity(node, self.settings) for node in nodes],
                self.settings.environment,
                self.turns,
            )
            contentions = self.pool.check(self.settings.environments)
            for line in self.pool.describe():
                log.info("pool: %s", line)
            for line in contentions:
                log.info("pool: %s", line)
            self.disk, passed_over = await self.runtime.disk_quota(
                self.settings.data_dir, self.settings.pool.disk_quota
            )
            log.info(
                "disk quota per job: %s (%s)%s",
                self.disk.mechanism,
                "hard"
                if self.disk.hard
                else "soft: a watcher stops a job past it"
                if self.disk.mechanism == "watch"
                else "soft: measured on the node, a job past it is stopped",
                f"; passed over: {passed_over}" if passed_over else "",
            )
            if self.key is None:
                provider = self.settings.provider
                self.key = Key(
                    await asyncio.to_thread(
                        provider_key,
                        provider.private_key,
                        provider.private_key_file,
                        self.settings.data_dir,
                    )
                )
            await self.store.open()
            await self.events.open()
            await self._remember_use()
            key = await asyncio.to_thread(StageKey.load, self.settings.data_dir)
            self.stage_files = StageFiles(
                self.store,
                self.settings.data_dir,
                key,
                self.settings.docker.log_max_bytes,
                lambda job: disk_limit(job, self.settings),
            )
        except BaseException:
            self._lock.release()
            raise
        try:
            await self.runtime.open()
            await images.ensure_helper_image(self.runtime, self.settings.docker)
            instance = await self.store.instance_id()
            # The store and runtime the jobs' steps use: with their failpoints in a test
            # that arms one, themselves otherwise.
            store = failpoints.watch_store(self.store)
            runtime = failpoints.watch_runtime(self.runtime)
            pipeline = Pipeline(
                store,
                runtime,
                self.settings,
                ContainerDefaults(
                    instance=instance, user=_container_user(self.settings.docker.run_as_user)
                ),
                self.metrics,
                self.disk,
                self.key,
            )
            self._scheduler = Scheduler(store, runtime, self.settings, pipeline, self.pool)
            await self._scheduler.reconcile()
            self.unavailable = await probe_environments(
                self.runtime,
                self.settings,
                self.pool.nodes,
                instance=instance,
                user=pipeline.defaults.user,
            )
            self.cpu_types = {
                e.id: e.cpu_type
                or next((n.cpu_model for n in self.pool.nodes if n.serves(e.node_label)), "")
                for e in self.settings.environments
            }
        except BaseException:
            await self.close()
            raise
        await self.scheduler.admit()
        self.scheduler.in_background(self.events.read_forever())
        self.scheduler.in_background(expiry_loop(self.expire_results))
        self.scheduler.in_background(self.scheduler.sweep_forever())
        self.scheduler.in_background(self.scheduler.deadlines_forever())

    async def _remember_use(self) -> None:
        """Fair turns after a restart as before it: the use of jobs that ended within
        twenty half-lives (what is older weighs less than a millionth)."""
        now = time.time()
        since = now - 20 * self.ledger.half_life
        for owner, allocation, held_since, finished in await self.store.recent_use(since):
            self.ledger.charge(owner, held_core_seconds(allocation, held_since, finished), finished)

    async def claim_data_dir(self) -> None:
        """Create and lock the data folder (ConfigError naming the holder if another
        engine has it). start() does it first; a server does it before anything else
        that touches the folder (its keys)."""
        if not self._lock.held:
            await asyncio.to_thread(self._lock.acquire)

    async def close(self) -> None:
        """Stop watching jobs; their containers run on and are re-attached at the next start."""
        self.events.close()  # the event streams end first: nothing holds the server open
        if self._scheduler is not None:
            await self._scheduler.close()
        await self.runtime.close()
        await self.store.close()
        self._lock.release()

    @property
    def scheduler(self) -> Scheduler:
        if self._scheduler is None:
            raise RuntimeError("the engine is not started")
        return self._scheduler

    @property
    def instance(self) -> str:
        return self.scheduler.instance

    # -- jobs -----------------------------------------------------------------

    async def submit(self, spec: JobSpec, *, requires: Preconditions | None = None) -> str:
        """Accept a job; it waits at 1 until its environment has a free slot.

        `requires` is checked in the insert's transaction (a nonce to consume, an
        agreement that must be unused): if it fails, nothing is stored.
        """
        env = self.settings.require_environment(spec.environment)
        if self.catalog is not None:
            self.catalog.check_job(spec)
        if env.id in self.unavailable:
            raise EnvironmentUnavailableError(
                f"Compute environment {env.id!r} is unavailable: {self.unavailable[env.id]}",
                environment=env.id,
            )
        await self.check_files(spec)
        if not await self.runtime.ping():
            raise DockerUnavailableError("the Docker engine does not answer; no job can start")
        limit = env.max_job_duration
        if spec.max_duration is not None:
            limit = min(limit, spec.max_duration)
        # The queue deadline that applies is stored with the job: the job's own, else
        # its environment's (0: none).
        spec = spec.model_copy(update={"queue_max_wait": spec.queue_max_wait or env.queue_max_wait})
        async with self.store.transaction() as tx:
            await tx.check(requires or Preconditions())
            if spec.owner:
                now = time.time()
                counts = await tx.consumer_counts(spec.owner, now - HOUR)
                check_start(self.settings.limits, env, spec.owner, counts, now)
            job_id = await tx.insert_job(spec, max_duration=limit)
        log.info("job %s accepted in %s", job_id, env.id)
        if spec.queue_max_wait:
            self.scheduler.watch_deadline(job_id, time.time() + spec.queue_max_wait)
        await self.scheduler.admit()
        return job_id

    async def check_files(self, spec: JobSpec) -> None:
        """InvalidJobError when a local file of the job is missing (policy.local_files)."""
        await policy.local_files(spec)

    async def check_image(self, ref: str) -> None:
        """ImageNotFoundError unless `ref` is here or can be pulled under the pull policy
        (the registry is asked; nothing is pulled)."""
        if not await must_pull(self.runtime, ref, self.settings.docker.pull_policy):
            return
        why = await self.runtime.pullable(ref)
        if why is not None:
            raise ImageNotFoundError(f"image {ref} is not on this host and cannot be pulled: {why}")

    async def get(self, job_id: str) -> Job:
        return await self.store.get(job_id)

    async def find(self, query: JobQuery | None = None) -> list[Job]:
        """The jobs `query` selects (all of them without one), oldest first."""
        return await self.store.find(query or JobQuery())

    async def stop(self, job_id: str) -> Job:
        """Stop a job in any status: a waiting one ends at once, a running one is killed."""
        return (await self.stop_jobs([job_id]))[0]

    async def stop_jobs(
        self, job_ids: Sequence[str], *, requires: Preconditions | None = None
    ) -> list[Job]:
        """Stop jobs; `requires` (a nonce) is checked in one transaction with the requests."""
        async with self.store.transaction() as tx:
            await tx.check(requires or Preconditions())
            for job_id in job_ids:
                await tx.request_stop(job_id, StopRequest.STOP)
        return await self._stopped(job_ids)

    async def _stopped(self, job_ids: Sequence[str]) -> list[Job]:
        """Act on recorded stops: a waiting job ends now, a running one is signalled."""
        stopped = []
        for job_id in job_ids:
            job = await self.store.get(job_id)
            if job.status == JobStatus.WARMING_UP:
                with contextlib.suppress(TransitionRefusedError):
                    job = await self.scheduler.finish_waiting(job)
            if not job.is_final:
                self.scheduler.signal_stop(job_id)
            stopped.append(await self.store.get(job_id))
        return stopped

    async def delete(self, job_id: str) -> Job:
        """Stop the job and remove its containers, folder and results; the row stays."""
        return (await self.delete_jobs([job_id]))[0]

    async def delete_jobs(
        self, job_ids: Sequence[str], *, requires: Preconditions | None = None
    ) -> list[Job]:
        """Record the deletes and answer at once, never waiting on a job.

        A finished job's files go now; a running one is stopped, and its own task
        removes them when it ends (the next start does, should the server die first).
        """
        async with self.store.transaction() as tx:
            await tx.check(requires or Preconditions())
            for job_id in job_ids:
                await tx.request_stop(job_id, StopRequest.STOP)
                await tx.request_delete(job_id)
        failpoints.hit("delete.after_request")
        answered = []
        for job in await self._stopped(job_ids):
            if job.is_final and not job.removed and not self.scheduler.is_running(job.job_id):
                job = await self.scheduler.remove_files(job)
            answered.append(job)
        return answered

    # -- nonces -----------------------------------------------------------------

    async def last_nonce(self, address: str) -> Decimal:
        """The last nonce accepted from `address`; 0 when none. Reading stores nothing."""
        return await self.store.get_nonce(address) or Decimal(0)

    async def check_nonce(self, address: str, nonce: Decimal) -> None:
        """NonceError unless `nonce` is above the last one accepted from `address`: asked
        before a signed call's work; the call's own transaction applies it again."""
        nonces.refuse_stale(await self.last_nonce(address), nonce)

    async def consume_nonce(self, address: str, nonce: Decimal) -> None:
        """Accept a nonce for a call that writes nothing else (a signed read)."""
        async with self.store.transaction() as tx:
            await tx.consume_nonce(address, nonce)

    async def metrics_text(self) -> bytes:
        """The Prometheus exposition, its gauges read from the store and runtime now."""
        self.metrics.refresh(
            await self.store.count_jobs(),
            {env.id: env.max_jobs for env in self.settings.environments},
            self.runtime.errors,
        )
        states = await self.environment_states()
        totals = next(iter(states.values())).pool_totals if states else {}
        self.metrics.refresh_pool(totals, {env: s.in_use for env, s in states.items()})
        self.metrics.refresh_consumers(await self.store.count_by_consumer())
        return self.metrics.exposition()

    # -- health -----------------------------------------------------------------

    async def health(self) -> dict[str, Check]:
        """Whether the store, the Docker engine and the helper image are usable now,
        each with how long asking took. Three cheap calls: fit to poll every second."""
        return await health_checks(self.store, self.runtime, self.settings.docker.helper_image)

    # -- auth tokens (the node dialect) ----------------------------------------

    async def revoke_token(
        self, token_id: str, expires_at: float | None, *, requires: Preconditions | None = None
    ) -> None:
        """Invalidate an auth token for good; `requires` (a nonce) in the same transaction."""
        async with self.store.transaction() as tx:
            await tx.check(requires or Preconditions())
            await tx.revoke_token(token_id, expires_at)

    async def token_revoked(self, token_id: str) -> bool:
        return await self.store.token_revoked(token_id)

    async def wait(self, job_id: str) -> Job:
        """The job once its task has ended, or once it ended waiting for a slot (for
        tests, benches and embedding programs)."""
        await self.scheduler.wait(job_id)
        return await self.store.get(job_id)

    async def environment_states(self) -> dict[str, EnvironmentState]:
        """Per environment: what its running jobs hold of the pool, the pool's totals,
        whether it can run jobs here, and how its disk limit is enforced."""
        active = await self.store.active_jobs()
        totals = pool_totals(self.pool.capacity)
        queued = await self.store.count_waiting()
        return {
            env.id: EnvironmentState(
                in_use=self.pool.in_use(j.claim for j in active if j.environment == env.id),
                pool_totals=totals,
                unavailable=self.unavailable.get(env.id),
                disk_quota=self.disk.mechanism,
                disk_hard=self.disk.hard,
                queued=queued.get(env.id, 0),
            )
            for env in self.settings.environments
        }

    async def overview(self) -> Overview:
        """Everything the operator's dashboard shows of the server now."""
        last_event_id = self.events.last_id  # first: the page misses no later change
        states = await self.environment_states()
        running = await self.store.slots_in_use()
        return Overview(
            environments=[
                EnvironmentOverview(
                    env, states[env.id], running.get(env.id, 0), self.cpu_types.get(env.id, "")
                )
                for env in self.settings.environments
            ],
            pool_totals=pool_totals(self.pool.capacity),
            jobs_by_status=await self.store.count_jobs(),
            consumers=[
                ConsumerQueue(owner, waiting, held)
                for owner, waiting, held in await self.store.count_by_consumer()
            ],
            runtime=self.settings.runtime.kind,
            health=await self.health(),
            last_event_id=last_event_id,
        )

    async def current_jobs(self) -> dict[str, int]:
        """Jobs that hold a slot, per environment."""
        return await self.store.slots_in_use()

    def pull_time(self, job_id: str) -> tuple[float, float] | None:
        """When the job's algorithm image pull began and ended, if this server saw it."""
        return self.scheduler.pipeline.algorithm.pull_times.get(job_id)

    def live_log(self, job_id: str) -> LiveLog | None:
        """The output of the job's algorithm while it runs, to follow; None when it is not."""
        return self.scheduler.pipeline.live_logs.get(job_id)

    async def expire_results(self, now: float | None = None) -> list[str]:
        """Delete the results of finished jobs older than their environment's
        storage_expiry (0: kept until the job is deleted). Returns the job ids."""
        return await expire_results(self.store, self.settings, self.delete, now)

    def result_path(self, job: Job, index: int) -> Path:
        result = job.results[index]
        return Workspace.of(self.settings.data_dir, job.job_id).root / result.path


def _container_user(setting: str) -> str:
    if setting != "auto":
        return setting
    uid = os.getuid()
    # As root, jobs still run unprivileged; otherwise as the server's own user, so
    # the server can always read and remove what they write.
    return "1000:1000" if uid == 0 else f"{uid}:{os.getgid()}"
