"""Failpoints: named moments at which a test makes the server die at once.

`LOCALCOMPUTE_FAILPOINT=algorithm.after_create` makes the process `os._exit` the
first time it reaches that point, as a SIGKILL, an OOM kill or a power cut would:
no finally block, no clean-up, no flushed buffer. The crash-safety tests kill a
server at every point in POINTS and check that the next start finishes the job,
with its algorithm run exactly once.

The points are one list, and most of them are not written at the call sites:
the runtime and the store the engine uses are wrapped (`watch_runtime`,
`watch_store`), so every container a step creates, starts, awaits or removes and
every status it writes passes its points, and a new step cannot forget them.
Without the variable nothing is wrapped and `hit` is one dictionary lookup.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from localcompute.core.errors import ConfigError
from localcompute.core.models import AdmissionView, Allocation, Job, ResultFile
from localcompute.core.status import JobStatus
from localcompute.runtime import ContainerExit, ContainerRuntime, ContainerSpec
from localcompute.runtime.containers import Stage
from localcompute.store import Store
from localcompute.store.base import Admission

VARIABLE = "LOCALCOMPUTE_FAILPOINT"
# The exit status of a process that died at a failpoint: the tests tell it from a crash.
EXIT_CODE = 86

CONTAINER_CALLS = ("create", "start", "wait", "remove")
HOST_STAGES = (Stage.FETCH, Stage.FILTER)
HOST_CALLS = ("start", "wait")
# Statuses the engine writes with a transition (1 is an insert, 10 is admission's).
WRITTEN_STATUSES = tuple(
    s for s in JobStatus if s not in (JobStatus.WARMING_UP, JobStatus.JOB_STARTED)
)

POINTS: tuple[str, ...] = (
    *(
        f"{stage}.{when}_{call}"
        for stage in Stage
        for call in CONTAINER_CALLS
        for when in ("before", "after")
    ),
    # A helper run as a process of this host (helpers_here.py) passes these instead:
    # started, it runs until it ends or the server dies (it dies with the server).
    *(
        f"{stage}.here_{when}_{call}"
        for stage in HOST_STAGES
        for call in HOST_CALLS
        for when in ("before", "after")
    ),
    *(f"status.{when}_{int(s)}" for s in WRITTEN_STATUSES for when in ("before", "after")),
    "admission.planned",  # inside admission's transaction: allocations chosen, none written
    "admission.after_commit",  # admitted in the store, no task spawned yet
    "publish.after_results",  # the results list stored, the job folder not yet scrubbed
    "publish.before_final",  # everything published and released; the final write next
    "delete.after_request",  # the delete recorded, nothing removed yet
    "delete.after_containers",  # containers gone, folder and disk not yet
    "delete.after_files",  # the folder gone, the row not yet marked removed
    "expiry.before_delete",  # a job's results found expired, not yet deleted
)
_KNOWN = frozenset(POINTS)


def armed(environ: Mapping[str, str] | None = None) -> str | None:
    """The point named by the variable; ConfigError when it names none."""
    point = (os.environ if environ is None else environ).get(VARIABLE) or None
    if point is not None and point not in _KNOWN:
        raise ConfigError(
            f"{VARIABLE}={point} names no failpoint; they are listed in "
            "localcompute/engine/failpoints.py (POINTS)"
        )
    return point


def hit(point: str) -> None:
    """Die here if this is the armed point."""
    if point not in _KNOWN:
        raise AssertionError(f"failpoint {point} is not in POINTS")
    if os.environ.get(VARIABLE) == point:
        os.write(2, f"localcompute: failpoint {point} reached, exiting\n".encode())
        os._exit(EXIT_CODE)


def _stage_of(name: str) -> str:
    """Container names end with their stage: lc-<instance>-<job>-<stage>."""
    return name.rsplit("-", 1)[-1]


class _WatchedRuntime:
    """A runtime whose container calls pass their failpoints; all else goes straight through."""

    def __init__(self, inner: ContainerRuntime) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def create(self, spec: ContainerSpec) -> None:
        hit(f"{_stage_of(spec.name)}.before_create")
        await self._inner.create(spec)
        hit(f"{_stage_of(spec.name)}.after_create")

    async def start(self, name: str) -> None:
        hit(f"{_stage_of(name)}.before_start")
        await self._inner.start(name)
        hit(f"{_stage_of(name)}.after_start")

    async def wait(self, name: str) -> ContainerExit:
        hit(f"{_stage_of(name)}.before_wait")
        exit_ = await self._inner.wait(name)
        hit(f"{_stage_of(name)}.after_wait")
        return exit_

    async def remove(self, name: str) -> None:
        hit(f"{_stage_of(name)}.before_remove")
        await self._inner.remove(name)
        hit(f"{_stage_of(name)}.after_remove")


class _WatchedAdmission:
    """Admission whose plan, made inside the store's transaction, passes its failpoint."""

    def __init__(self, inner: Admission) -> None:
        self._inner = inner

    def full_environments(self, active: Sequence[AdmissionView]) -> set[str]:
        return self._inner.full_environments(active)

    def plan(
        self, active: Sequence[AdmissionView], waiting: Sequence[AdmissionView]
    ) -> list[tuple[str, Allocation]]:
        chosen = self._inner.plan(active, waiting)
        if chosen:
            hit("admission.planned")
        return chosen


class _WatchedStore:
    """A store whose status writes pass their failpoints; all else goes straight through."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def transition(self, job_id: str, to: JobStatus, **fields: Any) -> Job:
        hit(f"status.before_{int(to)}")
        job = await self._inner.transition(job_id, to, **fields)
        hit(f"status.after_{int(to)}")
        return job

    async def admit(self, admission: Admission) -> list[Job]:
        jobs = await self._inner.admit(_WatchedAdmission(admission))
        if jobs:
            hit("admission.after_commit")
        return jobs

    async def set_results(self, job_id: str, results: list[ResultFile]) -> Job:
        job = await self._inner.set_results(job_id, results)
        hit("publish.after_results")
        return job


def watch_runtime(runtime: ContainerRuntime) -> ContainerRuntime:
    """`runtime` with its failpoints when one is armed; `runtime` itself otherwise."""
    if armed() is None:
        return runtime
    watched: Any = _WatchedRuntime(runtime)
    return watched  # type: ignore[no-any-return]


def watch_store(store: Store) -> Store:
    """`store` with its failpoints when one is armed; `store` itself otherwise."""
    if armed() is None:
        return store
    watched: Any = _WatchedStore(store)
    return watched  # type: ignore[no-any-return]
