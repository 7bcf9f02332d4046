"""The status enum and its transition table."""

from __future__ import annotations

from localcompute.core.status import (
    FINAL_STATUSES,
    TRANSITIONS,
    JobStatus,
    TerminationReason,
    predecessors,
)


def test_numbers_and_texts_are_oceans() -> None:
    assert {int(s): s.text for s in JobStatus} == {
        1: "Warming up",
        10: "Job started",
        20: "Configuring volumes",
        30: "Provisioning success",
        31: "Data provisioning failed",
        32: "Algorithm provisioning failed",
        40: "Running algorithm",
        50: "Filtering results",
        60: "Publishing results",
        70: "Job completed",
    }


def test_final_statuses_go_nowhere() -> None:
    assert {31, 32, 70} == FINAL_STATUSES
    for status in FINAL_STATUSES:
        assert TRANSITIONS[status] == frozenset()


def test_every_unfinished_status_can_end_and_none_goes_back() -> None:
    for status, nexts in TRANSITIONS.items():
        if status.is_final:
            continue
        assert JobStatus.JOB_COMPLETED in nexts
        assert all(n > status for n in nexts), f"{status} may move backwards"


def test_the_pipeline_order() -> None:
    assert predecessors(JobStatus.JOB_STARTED) == {JobStatus.WARMING_UP}
    assert predecessors(JobStatus.RUNNING_ALGORITHM) == {JobStatus.PROVISIONING_SUCCESS}
    assert predecessors(JobStatus.FILTERING_RESULTS) == {JobStatus.RUNNING_ALGORITHM}
    assert JobStatus.RUNNING_ALGORITHM not in TRANSITIONS[JobStatus.WARMING_UP]


def test_slots_are_held_from_10_to_60() -> None:
    assert [int(s) for s in JobStatus if s.holds_slot] == [10, 20, 30, 40, 50, 60]


def test_termination_texts() -> None:
    assert {r.value: r.text for r in TerminationReason if r is not TerminationReason.ERROR} == {
        "completed": "Job completed",
        "failed": "Algorithm failed",
        "stopped": "Job stopped",
        "timeout": "Job timed out",
        "oom": "Out of memory",
        "disk": "Disk quota exceeded",
        "queue_expired": "Job expired in queue",
    }
