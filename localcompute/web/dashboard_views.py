"""How the dashboard's data looks as JSON: the overview, a job's row and a job's page.

Views only: the numbers come from the engine (engine/overview.py, the job model).
Times are epoch seconds as numbers (the page does the arithmetic); every string is
data, which the page inserts as text, never as markup.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from localcompute import __version__
from localcompute.core.models import Job
from localcompute.core.status import JobStatus
from localcompute.engine.amounts import GIB
from localcompute.engine.overview import Overview

RESOURCES = ("cpu", "ram", "disk", "gpu")


def overview_view(o: Overview) -> dict[str, Any]:
    first = o.environments[0].state if o.environments else None
    return {
        "version": __version__,
        "runtime": o.runtime,
        "diskQuota": first.disk_limit if first else None,
        "health": {
            "ok": all(c.ok for c in o.health.values()),
            "checks": {name: dataclasses.asdict(c) for name, c in o.health.items()},
        },
        "pool": o.pool_totals,
        "poolInUse": {
            key: sum(e.state.in_use.get(key, 0.0) for e in o.environments) for key in RESOURCES
        },
        "environments": [
            {
                "id": e.settings.id,
                "description": e.settings.description,
                "maxJobs": e.settings.max_jobs,
                "running": e.running,
                "queued": e.state.queued,
                "maxJobDuration": e.settings.max_job_duration,
                "queueMaxWait": e.settings.queue_max_wait,
                "perJob": {
                    "cpu": e.settings.cpu,
                    "ram": e.settings.ram_gb,
                    "disk": e.settings.disk_gb,
                    "gpu": e.settings.gpu_count,
                },
                "inUse": e.state.in_use,
                "cpuType": e.cpu_type or e.settings.cpu_type,
                "network": e.settings.algorithm_network,
                "ociRuntime": e.settings.runtime or "runc",
                "unavailable": e.state.unavailable,
            }
            for e in o.environments
        ],
        "jobsByStatus": [
            {
                "environment": env,
                "status": status,
                "statusText": JobStatus.numbered(status).text,
                "count": count,
            }
            for env, status, count in o.jobs_by_status
        ],
        "consumers": [
            {"owner": c.owner, "waiting": c.waiting, "running": c.running} for c in o.consumers
        ],
        "lastEventId": o.last_event_id,
    }


def phases(job: Job, pull: tuple[float, float] | None = None) -> list[dict[str, Any]]:
    """The job's timeline: each phase it reached, from when until when (None: still on)."""
    queued_until = job.fetch_started_at or job.date_finished
    spans = [
        ("queued", job.date_created, queued_until),
        ("pull", *(pull or (None, None))),
        ("fetch", job.fetch_started_at, job.fetch_finished_at),
        ("algorithm", job.algorithm_started_at, job.algorithm_finished_at),
        ("filter", job.filter_started_at, job.filter_finished_at),
        ("publish", job.publish_started_at, job.publish_finished_at),
    ]
    return [
        {"name": name, "start": start, "end": end}
        for name, start, end in spans
        if start is not None
    ]


def job_summary(job: Job, pull: tuple[float, float] | None = None) -> dict[str, Any]:
    return {
        "jobId": job.job_id,
        "owner": job.owner,
        "environment": job.environment,
        "status": int(job.status),
        "statusText": job.status_text,
        "final": job.is_final,
        "dateCreated": job.date_created,
        "dateFinished": job.date_finished,
        "exitCode": job.exit_code,
        "terminationReason": job.termination_reason,
        "detail": job.detail,
        "stopRequested": int(job.stopreq) != 0,
        "removed": job.removed,
        "phases": phases(job, pull),
    }


def job_detail(job: Job, *, running: bool, pull: tuple[float, float] | None) -> dict[str, Any]:
    algorithm = job.spec.algorithm
    allocation = job.allocation
    base = f"/ui/api/jobs/{job.job_id}"
    return {
        **job_summary(job, pull),
        "running": running,
        "logUrl": base + "/log",
        "algorithm": {
            "image": algorithm.image_ref,
            "entrypoint": algorithm.entrypoint,
            "did": algorithm.did,
            "code": "rawcode" if algorithm.rawcode else "url" if algorithm.url else "image",
            "ranImage": job.algorithm_image.id if job.algorithm_image else None,
        },
        "inputs": [i.did for i in job.spec.inputs],
        "limits": {
            "maxDuration": job.max_duration,
            "queueMaxWait": job.spec.queue_max_wait or 0,
            "requested": job.spec.resources.model_dump(),
        },
        "allocation": None
        if allocation is None
        else {
            "cpu": allocation.cpu,
            "cpuset": allocation.cpuset,
            "ram": allocation.ram_bytes / GIB,
            "disk": allocation.disk_bytes / GIB,
            "gpus": allocation.gpus,
            "node": allocation.node or "this host",
        },
        "results": [
            {
                "index": index,
                "filename": r.filename,
                "filesize": r.filesize,
                "type": r.type,
                "sha256": r.sha256,
                "url": f"{base}/results/{index}",
            }
            for index, r in enumerate(job.results)
        ],
        "deleteRequested": job.delete_requested,
    }
