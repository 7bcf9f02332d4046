"""How a job ended: what its steps learned, and the one function that decides the outcome.

Funnel's deferred block: the runner collects what happened, `resolve` alone turns
it into a status, a termination reason and the words that say why, keeping "the
system failed" apart from "the user's algorithm failed".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from localcompute.core.models import Job
from localcompute.core.status import JobStatus, TerminationReason, status_text
from localcompute.helper.contract import EXIT_ALGORITHM_FAILED, EXIT_DATA_FAILED, EXIT_DISK_FULL
from localcompute.runtime import ContainerExit


class Interruption(Enum):
    STOP = "stop"
    TIMEOUT = "timeout"
    DISK = "disk"  # the watcher found the job's folder past its quota


@dataclass(frozen=True)
class EarlyEnd:
    """What a step learned that ends the job early; `resolve` turns it into the outcome."""

    status: JobStatus = JobStatus.JOB_COMPLETED  # 31 or 32 for a provisioning failure
    reason: TerminationReason | None = None  # STOPPED, or ERROR for a system failure
    detail: str = ""  # the sentence that says why, kept in `detail` and shown for ERROR
    logged: bool = False  # the sentence is a line of configure.log already


@dataclass(frozen=True)
class FinalOutcome:
    status: JobStatus
    reason: TerminationReason | None
    detail: str

    @property
    def status_text(self) -> str:
        return status_text(self.status, self.reason, self.detail)


def resolve(job: Job, ending: EarlyEnd | None) -> FinalOutcome:
    """The job's outcome, decided once, from what its steps recorded.

    Funnel's deferred block: a system failure beats the algorithm's own result,
    which beats "completed". A provisioning failure (31, 32) has no reason.
    """
    if ending is not None and ending.status != JobStatus.JOB_COMPLETED:
        return FinalOutcome(ending.status, None, ending.detail)
    if ending is not None and ending.reason is not None:
        reason, detail = ending.reason, ending.detail
    elif job.detail:  # a system failure recorded on the way (the filter, a lost container)
        reason, detail = TerminationReason.ERROR, job.detail
    else:
        reason, detail = job.termination_reason or TerminationReason.COMPLETED, ""
    return FinalOutcome(JobStatus.JOB_COMPLETED, reason, detail)


def first_failure(fetch_log: str) -> str:
    """The fetch helper's first line that says what failed ("input 0 (did:…) file 0:
    download failed: HTTP 404 Not Found"): the reason a provisioning failure shows.
    The helper never writes a source's URL or path, so the line is the consumer's to see."""
    return next((line for line in fetch_log.splitlines() if " failed" in line), "")


def algorithm_outcome(
    exit_: ContainerExit, interrupt: Interruption | None, *, disk_full: bool = False
) -> TerminationReason:
    """Why the algorithm ended; its exit code is kept beside this, never masked.
    `disk_full`: what it wrote reached its disk quota."""
    if interrupt is Interruption.TIMEOUT:
        return TerminationReason.TIMEOUT
    if interrupt is Interruption.STOP:
        return TerminationReason.STOPPED
    if exit_.oom_killed:
        return TerminationReason.OOM
    if interrupt is Interruption.DISK or disk_full:
        return TerminationReason.DISK
    if exit_.exit_code != 0:
        return TerminationReason.FAILED
    return TerminationReason.COMPLETED


def interrupt_while_away(
    exit_: ContainerExit, stop_requested: bool, deadline: float | None
) -> Interruption | None:
    """For an algorithm that exited while no server watched it (or while Docker was
    away): whether the server had stopped it or its deadline had, so that the job says
    "stopped" or "timed out" rather than blaming the algorithm for the signal."""
    if exit_.exit_code == 0:
        return None
    if stop_requested:
        return Interruption.STOP
    if deadline is not None and exit_.finished_at is not None and exit_.finished_at >= deadline:
        return Interruption.TIMEOUT
    return None


def killed_by_docker_restart(
    exit_: ContainerExit, interrupt: Interruption | None, docker_lost_at: float
) -> bool:
    """Whether the algorithm ended because the Docker engine went away under it: Docker
    stops running containers when it starts again (without live-restore), which looks
    like a SIGTERM or SIGKILL that came after the engine stopped answering."""
    if interrupt is not None or exit_.oom_killed or exit_.exit_code not in (137, 143, 255):
        return False
    return exit_.finished_at is None or exit_.finished_at >= docker_lost_at - 1.0


def fetch_ending(
    exit_: ContainerExit,
    interrupt: Interruption | None,
    fetch_timeout: float,
    *,
    disk_full: bool = False,
    disk_limit: int = 0,
) -> EarlyEnd | None:
    """What the fetch container's end means; None when everything is in place."""
    full = disk_full and exit_.exit_code != 0
    if interrupt is Interruption.DISK or exit_.exit_code == EXIT_DISK_FULL or full:
        note = f"the inputs do not fit the job's disk quota of {disk_limit / 1024**2:g} MiB"
        return EarlyEnd(JobStatus.DATA_PROVISIONING_FAILED, detail=note)
    if interrupt is Interruption.STOP:
        return EarlyEnd(reason=TerminationReason.STOPPED)
    if interrupt is Interruption.TIMEOUT:
        note = f"fetch did not finish within {fetch_timeout:g} s"
        return EarlyEnd(JobStatus.DATA_PROVISIONING_FAILED, detail=note)
    if exit_.exit_code == EXIT_ALGORITHM_FAILED:
        return EarlyEnd(JobStatus.ALGORITHM_PROVISIONING_FAILED)
    if exit_.exit_code == EXIT_DATA_FAILED:
        return EarlyEnd(JobStatus.DATA_PROVISIONING_FAILED)
    if exit_.exit_code != 0:
        note = f"fetch ended with exit code {exit_.exit_code}"
        return EarlyEnd(JobStatus.DATA_PROVISIONING_FAILED, detail=note)
    return None
