"""The node dialect's view of a job: Ocean Node's statuses, texts and results list."""

from __future__ import annotations

from typing import Any

import pytest

from localcompute.core.jobspec import AlgorithmSpec, JobSpec
from localcompute.core.models import Job, ResultFile
from localcompute.core.status import JobStatus, TerminationReason
from localcompute.store.memory import new_row
from localcompute.web.node_views import NodeStatus, node_job, node_results, node_status

SPEC = JobSpec(
    environment="e",
    owner="0xabc",
    algorithm=AlgorithmSpec(rawcode="true", image="busybox", entrypoint="sh $ALGO"),
    api="node",
    output_archive=True,
)


def job(**fields: Any) -> Job:
    return Job.model_validate(new_row(SPEC, max_duration=60, **fields))


def result(name: str, kind: str) -> ResultFile:
    return ResultFile(filename=name, filesize=3, type=kind, sha256="0" * 64, path=name)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (JobStatus.WARMING_UP, (1, "Job queued")),
        (JobStatus.JOB_STARTED, (10, "Pulling algorithm image")),
        (JobStatus.RUNNING_ALGORITHM, (40, "Running algorithm ")),
        (JobStatus.PUBLISHING_RESULTS, (60, "Publishing results")),
        (JobStatus.DATA_PROVISIONING_FAILED, (31, "Data provisioning failed")),
        (JobStatus.ALGORITHM_PROVISIONING_FAILED, (32, "Algorithm provisioning failed")),
    ],
)
def test_statuses_on_the_way_have_the_node_s_numbers_and_texts(
    status: JobStatus, expected: tuple[int, str]
) -> None:
    view = node_job(job(status=status))
    assert (view["status"], view["statusText"]) == expected


@pytest.mark.parametrize(
    "reason",
    [
        TerminationReason.COMPLETED,
        TerminationReason.FAILED,
        TerminationReason.STOPPED,
        TerminationReason.TIMEOUT,
        TerminationReason.OOM,
    ],
)
def test_an_algorithm_that_ended_in_any_way_finished_and_says_how(
    reason: TerminationReason,
) -> None:
    ended = job(
        status=JobStatus.JOB_COMPLETED,
        termination_reason=reason,
        exit_code=137 if reason is TerminationReason.OOM else 0,
        date_finished=2.0,
    )
    view = node_job(ended)
    assert (view["status"], view["statusText"]) == (70, "Job finished")
    assert view["dateFinished"] is not None
    assert view["terminationDetails"]["OOMKilled"] is (reason is TerminationReason.OOM)
    assert view["terminationDetails"]["reason"] == str(reason)


def test_a_failure_of_the_system_is_a_failure_state_by_where_it_happened() -> None:
    before = job(status=JobStatus.JOB_COMPLETED, termination_reason=TerminationReason.ERROR)
    assert node_status(before) is NodeStatus.ALGORITHM_FAILED
    after = job(
        status=JobStatus.JOB_COMPLETED,
        termination_reason=TerminationReason.ERROR,
        exit_code=0,
        filter_started_at=1.0,
    )
    assert node_status(after) is NodeStatus.OUTPUTS_FAILED
    assert "failed" in NodeStatus.ALGORITHM_FAILED.text.lower()
    assert "failed" in NodeStatus.OUTPUTS_FAILED.text.lower()


def test_results_are_listed_in_the_node_s_order_and_names() -> None:
    done = job(
        status=JobStatus.JOB_COMPLETED,
        termination_reason=TerminationReason.COMPLETED,
        results=[
            result("outputs.tar", "output"),
            result("algorithm.log", "algorithmLog"),
            result("configure.log", "configrationLog"),
            result("filter.log", "filteringLog"),
            result("publish.log", "publishLog"),
        ],
    )
    assert [(r.filename, r.type) for r in node_results(done)] == [
        ("configuration.log", "configurationLog"),
        ("algorithm.log", "algorithmLog"),
        ("outputs.tar", "output"),
    ]
    assert [r["index"] for r in node_job(done)["results"]] == [0, 1, 2]
