"""The rooms of a job's way, in order: which step runs from which status.

The table is the one statement of it: the pipeline walks it, and the scheduler
asks it which container a job at a status may have when it reconciles.
"""

from __future__ import annotations

from dataclasses import dataclass

from localcompute.core.status import JobStatus
from localcompute.runtime.containers import Stage


@dataclass(frozen=True)
class Step:
    """One room of a job's way: the statuses it runs from, and what it does there."""

    stage: Stage
    runs_from: frozenset[JobStatus]


STEPS = (
    Step(Stage.FETCH, frozenset({JobStatus.JOB_STARTED, JobStatus.CONFIGURING_VOLUMES})),
    Step(
        Stage.ALGORITHM,
        frozenset({JobStatus.PROVISIONING_SUCCESS, JobStatus.RUNNING_ALGORITHM}),
    ),
    Step(Stage.FILTER, frozenset({JobStatus.FILTERING_RESULTS})),
)


def stage_at(status: JobStatus) -> Stage | None:
    """The step a job at `status` is in, so the one container it may have; None if none."""
    return next((step.stage for step in STEPS if status in step.runs_from), None)
