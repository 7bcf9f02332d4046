"""The one function that decides how a job ended, from what its steps recorded."""

from __future__ import annotations

from typing import Any

import pytest

from localcompute.core.jobspec import AlgorithmSpec, JobSpec
from localcompute.core.models import Job
from localcompute.core.status import JobStatus, TerminationReason
from localcompute.engine.outcome import EarlyEnd, Interruption, algorithm_outcome, resolve
from localcompute.helper.contract import EXIT_ALGORITHM_FAILED, EXIT_DATA_FAILED
from localcompute.runtime import ContainerExit
from localcompute.store.memory import new_row


def job(**fields: Any) -> Job:
    spec = JobSpec(
        environment="e",
        algorithm=AlgorithmSpec(image="busybox", entrypoint="sh $ALGO", rawcode="true"),
    )
    status = fields.pop("status", JobStatus.PUBLISHING_RESULTS)
    return Job.model_validate(new_row(spec, max_duration=60, status=status, **fields))


def test_a_job_that_went_the_whole_way_completed() -> None:
    outcome = resolve(job(), None)

    assert (outcome.status, outcome.reason, outcome.status_text) == (
        JobStatus.JOB_COMPLETED,
        TerminationReason.COMPLETED,
        "Job completed",
    )


@pytest.mark.parametrize(
    "reason", [TerminationReason.FAILED, TerminationReason.TIMEOUT, TerminationReason.OOM]
)
def test_the_algorithms_own_end_is_kept(reason: TerminationReason) -> None:
    outcome = resolve(job(termination_reason=reason, exit_code=3), None)

    assert (outcome.reason, outcome.status_text, outcome.detail) == (reason, reason.text, "")


def test_a_system_failure_on_the_way_beats_the_algorithms_result() -> None:
    # The filter failed after a successful algorithm: the job failed, and says why.
    why = "Job failed: the output filter timed out; outputs withheld"
    outcome = resolve(job(termination_reason=TerminationReason.COMPLETED, detail=why), None)

    assert (outcome.reason, outcome.status_text, outcome.detail) == (
        TerminationReason.ERROR,
        why,
        why,
    )


@pytest.mark.parametrize(
    "status", [JobStatus.DATA_PROVISIONING_FAILED, JobStatus.ALGORITHM_PROVISIONING_FAILED]
)
def test_a_provisioning_failure_ends_at_its_own_status_without_a_reason(
    status: JobStatus,
) -> None:
    outcome = resolve(
        job(status=JobStatus.CONFIGURING_VOLUMES), EarlyEnd(status, detail="HTTP 404")
    )

    assert (outcome.status, outcome.reason, outcome.status_text, outcome.detail) == (
        status,
        None,
        status.text,
        "HTTP 404",
    )


def test_an_ending_beats_what_the_row_says() -> None:
    stopped = resolve(job(detail="old"), EarlyEnd(reason=TerminationReason.STOPPED))
    crashed = resolve(job(), EarlyEnd(reason=TerminationReason.ERROR, detail="Job failed: X"))

    assert (stopped.reason, stopped.status_text) == (TerminationReason.STOPPED, "Job stopped")
    assert (crashed.reason, crashed.status_text) == (TerminationReason.ERROR, "Job failed: X")


@pytest.mark.parametrize(
    ("exit_code", "oom", "interrupt", "reason"),
    [
        (0, False, None, TerminationReason.COMPLETED),
        (2, False, None, TerminationReason.FAILED),
        (137, True, None, TerminationReason.OOM),
        (143, False, Interruption.TIMEOUT, TerminationReason.TIMEOUT),
        (143, False, Interruption.STOP, TerminationReason.STOPPED),
    ],
)
def test_algorithm_outcome(
    exit_code: int, oom: bool, interrupt: Interruption | None, reason: TerminationReason
) -> None:
    exit_ = ContainerExit(exit_code=exit_code, oom_killed=oom, started_at=None, finished_at=None)

    assert algorithm_outcome(exit_, interrupt) == reason


def test_the_fetch_helpers_exit_codes_are_the_failure_statuses() -> None:
    # The helper runs in its own container; its exit code is the status the job ends at.
    assert EXIT_DATA_FAILED == JobStatus.DATA_PROVISIONING_FAILED
    assert EXIT_ALGORITHM_FAILED == JobStatus.ALGORITHM_PROVISIONING_FAILED
