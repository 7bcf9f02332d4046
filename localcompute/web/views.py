"""How a job looks to each API dialect: two views over one job model."""

from __future__ import annotations

import time
from typing import Any, cast
from urllib.parse import urlencode

from localcompute.core.models import Job, ResultType
from localcompute.core.settings import Settings
from localcompute.engine.envstate import EnvironmentState
from localcompute.web.status_shape import OperatorStatus, ProviderStatus, ResultEntry, StatusObject

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


def epoch_text(value: float | None) -> str | None:
    """Ocean's clients read dates as epoch seconds in a string ("1700000000.123456")."""
    return None if value is None else f"{value:.6f}"


def results_list(job: Job) -> list[ResultEntry]:
    return [
        # As stored: a view never fails on a type it does not know.
        {"filename": r.filename, "filesize": r.filesize, "type": cast(ResultType, r.type)}
        for r in job.results
    ]


def _url(base_url: str, path: str, params: dict[str, Any]) -> str:
    return f"{base_url}{path}?{urlencode(params)}"


def common_fields(job: Job) -> StatusObject:
    algo = job.spec.algorithm
    return {
        "jobId": job.job_id,
        "owner": job.owner,
        "agreementId": job.agreement_id,
        "environment": job.environment,
        "dateCreated": epoch_text(job.date_created),
        "dateFinished": epoch_text(job.date_finished),
        "status": job.status,
        "statusText": job.status_text,
        "results": results_list(job),
        "resultsDid": "",
        "stopreq": job.stopreq,
        "removed": 1 if job.removed else 0,
        "algoDID": algo.did or "raw",
        "inputDID": job.input_dids,
        "exitCode": job.exit_code,
        "terminationReason": job.termination_reason,
        # Beyond Ocean's fields: why it ended, in one line ("input 0 (did:…) file 0:
        # download failed: HTTP 404 Not Found"), when there is more to say than the status.
        "terminationDetail": job.detail or None,
    }


def provider_status(job: Job, base_url: str) -> ProviderStatus:
    """The status object of the provider API (/api/services/compute)."""
    urls = [
        _url(
            base_url,
            "/api/services/computeResult",
            {"jobId": job.job_id, "index": i, "consumerAddress": job.owner},
        )
        for i in range(len(job.results))
    ]
    log_url = next(
        (u for u, r in zip(urls, job.results, strict=True) if r.type == ResultType.ALGORITHM_LOG),
        "",
    )
    status = cast(ProviderStatus, common_fields(job))
    status["documentId"] = job.input_dids[0] if job.input_dids else ""
    status["algorithmLogUrl"] = log_url
    status["resultsUrls"] = urls
    return status


def operator_status(job: Job, base_url: str) -> OperatorStatus:
    """The status object of the Operator-Service API (/api/v1/…/compute)."""

    def url(index: int) -> str:
        return _url(
            base_url,
            "/api/v1/operator/getResult",
            {"jobId": job.job_id, "index": index, "owner": job.owner},
        )

    def first(kind: str) -> str:
        return next((url(i) for i, r in enumerate(job.results) if r.type == kind), "")

    status = cast(OperatorStatus, common_fields(job))
    status["configlogUrl"] = first(ResultType.CONFIGURATION_LOG)
    status["publishlogUrl"] = first(ResultType.PUBLISH_LOG)
    status["algologUrl"] = first(ResultType.ALGORITHM_LOG)
    status["outputsUrl"] = [
        url(i) for i, r in enumerate(job.results) if r.type == ResultType.OUTPUT
    ]
    # The workflow's stage output, as the provider sent it ({} for provider-API jobs).
    status["output"] = job.spec.workflow_output
    return status


def environment_views(
    settings: Settings,
    cpu_types: dict[str, str],
    current: dict[str, int],
    address: str,
    states: dict[str, EnvironmentState],
) -> list[dict[str, Any]]:
    """The environments as Ocean's clients read them (cpuNumber and the older nCPU, …)."""
    now = epoch_text(time.time())
    return [
        {
            "id": env.id,
            "desc": described(env.description, states.get(env.id)),
            "cpuNumber": _number(env.cpu),
            "nCPU": _number(env.cpu),
            "cpuType": cpu_types.get(env.id, env.cpu_type),
            "gpuNumber": env.gpu_count,
            "nGPU": env.gpu_count,
            "gpuType": env.gpu_type,
            "ramGB": _number(env.ram_gb),
            "diskGB": _number(env.disk_gb),
            # ocean.js picks a free environment with priceMin === 0: a JSON number.
            "priceMin": _number(env.price_min),
            "currentJobs": current.get(env.id, 0),
            # Beyond Ocean's: how many wait for a slot, and for how long they may.
            "queuedJobs": states[env.id].queued if env.id in states else 0,
            "queueMaxWaitTime": _number(env.queue_max_wait),
            "maxJobs": env.max_jobs,
            "maxJobDuration": _number(env.max_job_duration),
            "storageExpiry": env.storage_expiry,
            "consumerAddress": address,
            "lastSeen": now,
            "feeToken": ZERO_ADDRESS,
            "free": env.price_min == 0,
            "available": env.id in states and states[env.id].unavailable is None,
            "diskQuota": states[env.id].disk_limit if env.id in states else None,
        }
        for env in settings.environments
    ]


def described(description: str, state: EnvironmentState | None) -> str:
    """An environment's description, with what a client must know before it submits."""
    notes = []
    if state is not None and state.unavailable:
        notes.append(f"unavailable: {state.unavailable}")
    if state is not None and not state.disk_hard:
        notes.append(
            "disk limit is soft: a job past it is stopped within a second"
            if state.disk_quota == "watch"
            else "disk limit is soft: measured on the node every half second, a job past it "
            "is stopped"
        )
    return " ".join([description, *(f"({n})" for n in notes)]).strip()


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value
