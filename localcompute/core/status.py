"""Job statuses with Ocean's numbers and texts, and the only allowed transitions.

The numbers are the client contract (ocean.py treats 31/32 as failure and 70 as
done); the texts are what the compute issue fixes for this project.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Self, cast


class NumberedText(IntEnum):
    """A status number with its text: members are declared as `NAME = number, "text"`."""

    text: str

    def __new__(cls, value: int, text: str) -> NumberedText:
        member = int.__new__(cls, value)
        member._value_ = value
        member.text = text
        return member

    @classmethod
    def numbered(cls, number: int) -> Self:
        """The member with this number (ValueError if none): what `cls(number)` does, but
        the two-argument constructor hides that call from type checkers."""
        member = cls._value2member_map_.get(number)
        if member is None:
            raise ValueError(f"{number} is not a {cls.__name__} number")
        return cast(Self, member)


class JobStatus(NumberedText):
    """Where a job is. The value is Ocean's status number; `text` its statusText."""

    WARMING_UP = 1, "Warming up"
    JOB_STARTED = 10, "Job started"
    CONFIGURING_VOLUMES = 20, "Configuring volumes"
    PROVISIONING_SUCCESS = 30, "Provisioning success"
    DATA_PROVISIONING_FAILED = 31, "Data provisioning failed"
    ALGORITHM_PROVISIONING_FAILED = 32, "Algorithm provisioning failed"
    RUNNING_ALGORITHM = 40, "Running algorithm"
    FILTERING_RESULTS = 50, "Filtering results"
    PUBLISHING_RESULTS = 60, "Publishing results"
    JOB_COMPLETED = 70, "Job completed"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES

    @property
    def holds_slot(self) -> bool:
        """A job from 10 to 60 holds one of its environment's max_jobs slots."""
        return JobStatus.JOB_STARTED <= self <= JobStatus.PUBLISHING_RESULTS and not self.is_final


FINAL_STATUSES = frozenset(
    {
        JobStatus.DATA_PROVISIONING_FAILED,
        JobStatus.ALGORITHM_PROVISIONING_FAILED,
        JobStatus.JOB_COMPLETED,
    }
)

SLOT_STATUSES = frozenset(s for s in JobStatus if s.holds_slot)

# Every status a job may move to from each status. Besides the pipeline's own
# order: a stop sends a started job on to publish, so its logs become results, and
# any unfinished job may end at 70 when the system fails under it.
_PIPELINE: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.WARMING_UP: frozenset({JobStatus.JOB_STARTED}),
    JobStatus.JOB_STARTED: frozenset({JobStatus.CONFIGURING_VOLUMES, JobStatus.PUBLISHING_RESULTS}),
    JobStatus.CONFIGURING_VOLUMES: frozenset(
        {
            JobStatus.PROVISIONING_SUCCESS,
            JobStatus.DATA_PROVISIONING_FAILED,
            JobStatus.ALGORITHM_PROVISIONING_FAILED,
            JobStatus.PUBLISHING_RESULTS,
        }
    ),
    JobStatus.PROVISIONING_SUCCESS: frozenset(
        {
            JobStatus.RUNNING_ALGORITHM,
            JobStatus.ALGORITHM_PROVISIONING_FAILED,
            JobStatus.PUBLISHING_RESULTS,
        }
    ),
    JobStatus.RUNNING_ALGORITHM: frozenset({JobStatus.FILTERING_RESULTS}),
    JobStatus.FILTERING_RESULTS: frozenset({JobStatus.PUBLISHING_RESULTS}),
    JobStatus.PUBLISHING_RESULTS: frozenset(),
}
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    status: (
        frozenset() if status in FINAL_STATUSES else _PIPELINE[status] | {JobStatus.JOB_COMPLETED}
    )
    for status in JobStatus
}


def predecessors(target: JobStatus) -> frozenset[JobStatus]:
    """The statuses from which a job may move to `target`."""
    return frozenset(s for s, nexts in TRANSITIONS.items() if target in nexts)


class TerminationReason(StrEnum):
    """Why a job ended; `text` is the statusText of a job that reached 70 this way."""

    text: str

    def __new__(cls, value: str, text: str) -> TerminationReason:
        member = str.__new__(cls, value)
        member._value_ = value
        member.text = text
        return member

    COMPLETED = "completed", "Job completed"
    FAILED = "failed", "Algorithm failed"
    STOPPED = "stopped", "Job stopped"
    TIMEOUT = "timeout", "Job timed out"
    OOM = "oom", "Out of memory"
    DISK = "disk", "Disk quota exceeded"
    # It waited for a slot past its queue deadline and never ran.
    QUEUE_EXPIRED = "queue_expired", "Job expired in queue"
    # The system failed, not the user's algorithm (a lost container, a helper that crashed).
    ERROR = "error", "Job failed"


class StopRequest(IntEnum):
    """The `stopreq` field of Ocean's status object."""

    NONE = 0
    STOP = 1
    TIME_LIMIT = 2


def status_text(status: JobStatus, reason: TerminationReason | None, detail: str) -> str:
    """Ocean's statusText, derived: how a job at 70 ended, else its status's own text.

    A job the system failed says why in `detail`; that sentence is its statusText.
    """
    if status != JobStatus.JOB_COMPLETED or reason is None:
        return status.text
    return detail if reason is TerminationReason.ERROR and detail else reason.text
