"""The rooms of a job's way, in order: which step runs from which status, which status
it works in and leaves for, and which phase times those moves record.

The table is the one statement of it: the runner (pipeline.py) makes every move it
says, so a step only does its work and returns what it learnt (`Done`, or an `EarlyEnd`);
the scheduler asks it which container a job at a status may have when it reconciles.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from localcompute.core.models import Job
from localcompute.core.status import JobStatus
from localcompute.engine.outcome import EarlyEnd
from localcompute.runtime.containers import Stage
from localcompute.store import Store


@dataclass(frozen=True)
class Step:
    stage: Stage
    runs_from: frozenset[JobStatus]
    enters: JobStatus | None  # the status it works in; None: it works in its first one
    started: str | None  # the phase time written as it enters
    leaves: JobStatus  # the status the runner writes once it is done
    finished: tuple[str, ...]  # the phase times written as it leaves
    # The step enters its status itself, at its own moment, through Moves.enter: the
    # algorithm's 40 lands between its container's create and start, so that its time
    # limit counts from the start.
    enters_itself: bool = False


STEPS = (
    Step(
        Stage.FETCH,
        frozenset({JobStatus.JOB_STARTED, JobStatus.CONFIGURING_VOLUMES}),
        enters=JobStatus.CONFIGURING_VOLUMES,
        started="fetch_started_at",
        leaves=JobStatus.PROVISIONING_SUCCESS,
        finished=("fetch_finished_at",),
    ),
    Step(
        Stage.ALGORITHM,
        frozenset({JobStatus.PROVISIONING_SUCCESS, JobStatus.RUNNING_ALGORITHM}),
        enters=JobStatus.RUNNING_ALGORITHM,
        started="algorithm_started_at",
        leaves=JobStatus.FILTERING_RESULTS,
        finished=("filter_started_at",),
        enters_itself=True,
    ),
    Step(
        Stage.FILTER,
        frozenset({JobStatus.FILTERING_RESULTS}),
        enters=None,
        started=None,
        leaves=JobStatus.PUBLISHING_RESULTS,
        finished=("filter_finished_at", "publish_started_at"),
    ),
)


def stage_at(status: JobStatus) -> Stage | None:
    """The step a job at `status` is in, so the one container it may have; None if none."""
    return next((step.stage for step in STEPS if status in step.runs_from), None)


@dataclass(frozen=True)
class Done:
    """A step's work is done: what it learnt, written with the move to its `leaves`
    (the algorithm's exit code and end, say); then, with `ending`, the job is published
    at once (its later steps cannot run: the algorithm's node is gone). `after_leave`
    runs once that move is written: what must not happen before it (the algorithm's
    container may go only once its exit is recorded, or a crash between the two would
    leave a job at 40 with no trace of what its algorithm did)."""

    facts: Mapping[str, Any] = field(default_factory=dict)
    ending: EarlyEnd | None = None
    after_leave: Callable[[], None] | None = None


class Moves:
    """The runner's moves of one job through one step: the one way a step changes the
    job's status, and only through the narrow call the table gives it."""

    def __init__(self, store: Store, step: Step, job: Job) -> None:
        self._store = store
        self._step = step
        self.job = job
        # The job was in this step's status already: the step resumes after a restart.
        self.resumed = step.enters is not None and job.status == step.enters

    async def enter(self) -> Job:
        """Into the step's status (once), recording when."""
        step = self._step
        if step.enters is not None and self.job.status != step.enters:
            times = {step.started: time.time()} if step.started else {}
            self.job = await self._store.transition(self.job.job_id, step.enters, **times)
        return self.job

    async def leave(self, done: Done) -> Job:
        """Out to the step's `leaves`, with what it learnt and when."""
        now = time.time()
        times = {name: now for name in self._step.finished}
        self.job = await self._store.transition(
            self.job.job_id, self._step.leaves, **{**times, **done.facts}
        )
        return self.job
