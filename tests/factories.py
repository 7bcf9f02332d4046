"""Values for tests, made one way: a Job as the store would hand it out, with defaults for
every field a test does not care about."""

from __future__ import annotations

from typing import Any

from localcompute.core.jobspec import AlgorithmSpec, JobSpec
from localcompute.core.models import Job
from localcompute.core.status import JobStatus, StopRequest


def a_spec(**fields: Any) -> JobSpec:
    """A job spec of raw shell code in environment "e"; `fields` replace any of it."""
    algorithm = AlgorithmSpec(image="busybox", entrypoint="sh $ALGO", rawcode="true")
    return JobSpec(**{"environment": "e", "algorithm": algorithm, **fields})


def a_job(spec: JobSpec | None = None, **fields: Any) -> Job:
    """A job just inserted (status 1, nothing run), as the store reads it back."""
    spec = spec or a_spec()
    return Job.model_validate(
        {
            "job_id": "j1",
            "environment": spec.environment,
            "owner": spec.owner or "o",
            "agreement_id": "a",
            "status": JobStatus.JOB_STARTED,
            "stopreq": StopRequest.NONE,
            "removed": False,
            "delete_requested": False,
            "exit_code": None,
            "termination_reason": None,
            "detail": "",
            "date_created": 0,
            "date_finished": None,
            "max_duration": 60,
            "secret": "s" * 32,
            "spec": spec,
            "results": [],
            **{f"{phase}_{edge}_at": None for phase in PHASES for edge in ("started", "finished")},
            **fields,
        }
    )


PHASES = ("fetch", "algorithm", "filter", "publish")
