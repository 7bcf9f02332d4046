"""How jobs and environments look to Ocean Node's clients (ocean.js 8.x).

A third view over the one job model: the node's status numbers and texts, its
results list (configuration.log, algorithm.log, outputs.tar, indexed by position),
and its environment shape with resources in cores and GB.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from localcompute.core.models import NODE_FILENAMES, Job, ResultFile, ResultType
from localcompute.core.settings import EnvironmentSettings
from localcompute.core.status import JobStatus, NumberedText, TerminationReason
from localcompute.engine import policy
from localcompute.engine.envstate import EnvironmentState
from localcompute.web.views import described, epoch_text


class NodeStatus(NumberedText):
    """Ocean Node's status numbers; `text` is its exact statusText (clients match
    "Running algorithm", "failed" and "error" in it, so the trailing space stays)."""

    QUEUED = 1, "Job queued"
    EXPIRED_IN_QUEUE = 2, "Job expired in queue"
    PULLING_IMAGE = 10, "Pulling algorithm image"
    CONFIGURING_VOLUMES = 20, "Configuring volumes"
    PROVISIONING = 30, "Provisioning data"
    DATA_PROVISIONING_FAILED = 31, "Data provisioning failed"
    ALGORITHM_PROVISIONING_FAILED = 32, "Algorithm provisioning failed"
    RUNNING = 40, "Running algorithm "
    ALGORITHM_FAILED = 41, "Failed to run algorithm"
    FILTERING = 50, "Filtering results"
    PUBLISHING = 60, "Publishing results"
    OUTPUTS_FAILED = 61, "Failed to get outputs folder from container"
    FINISHED = 70, "Job finished"


_WHILE_RUNNING = {
    JobStatus.WARMING_UP: NodeStatus.QUEUED,
    JobStatus.JOB_STARTED: NodeStatus.PULLING_IMAGE,
    JobStatus.CONFIGURING_VOLUMES: NodeStatus.CONFIGURING_VOLUMES,
    JobStatus.PROVISIONING_SUCCESS: NodeStatus.PROVISIONING,
    JobStatus.RUNNING_ALGORITHM: NodeStatus.RUNNING,
    JobStatus.FILTERING_RESULTS: NodeStatus.FILTERING,
    JobStatus.PUBLISHING_RESULTS: NodeStatus.PUBLISHING,
    JobStatus.DATA_PROVISIONING_FAILED: NodeStatus.DATA_PROVISIONING_FAILED,
    JobStatus.ALGORITHM_PROVISIONING_FAILED: NodeStatus.ALGORITHM_PROVISIONING_FAILED,
}


def node_status(job: Job) -> NodeStatus:
    """The node's status of `job`. A finished job goes straight to its final state.

    An algorithm that exits non-zero, is stopped or runs out of time still "finished",
    as on Ocean Node (terminationDetails says how); only a failure of the system is
    a failure state: before the algorithm ran, or while its outputs were collected.
    """
    if job.status != JobStatus.JOB_COMPLETED:
        return _WHILE_RUNNING[job.status]
    if job.termination_reason is TerminationReason.QUEUE_EXPIRED:
        return NodeStatus.EXPIRED_IN_QUEUE
    if job.termination_reason is TerminationReason.ERROR:
        # No exit code: the algorithm never ran to an end (it could not start, or was
        # lost); with one, what failed came after it (collecting its outputs).
        ran = job.exit_code is not None
        return NodeStatus.OUTPUTS_FAILED if ran else NodeStatus.ALGORITHM_FAILED
    return NodeStatus.FINISHED


# Our result types, as the node names them, in the node's order.
_NODE_RESULTS = (
    (
        ResultType.CONFIGURATION_LOG,
        NODE_FILENAMES[ResultType.CONFIGURATION_LOG],
        "configurationLog",
    ),
    (ResultType.ALGORITHM_LOG, "algorithm.log", "algorithmLog"),
    (ResultType.OUTPUT, None, "output"),
    (ResultType.RECEIPT, None, "receipt"),
)


@dataclass(frozen=True)
class NodeResult:
    filename: str
    type: str
    result: ResultFile  # the file behind it

    def view(self, index: int) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "filesize": self.result.filesize,
            "type": self.type,
            "index": index,
        }


def node_results(job: Job) -> list[NodeResult]:
    """The results as the node lists them; a result's index is its position here."""
    listed = []
    for ours, name, theirs in _NODE_RESULTS:
        for result in job.results:
            if result.type == ours:
                listed.append(NodeResult(name or result.filename, theirs, result))
    return listed


def _stamp(value: float | None) -> str:
    return epoch_text(value) or "0"


def node_job(job: Job) -> dict[str, Any]:
    """The job object of ocean.js 8 (NodeComputeJob); the same jobId in every answer."""
    status = node_status(job)
    spec = job.spec
    started, stopped = job.algorithm_started_at, job.algorithm_finished_at
    final = job.is_final
    return {
        "owner": job.owner,
        "did": None,
        "jobId": job.job_id,
        "jobIdHash": "0x" + hashlib.sha256(job.job_id.encode()).hexdigest(),
        "dateCreated": epoch_text(job.date_created),
        "dateFinished": epoch_text(job.date_finished) if final else None,
        "status": int(status),
        "statusText": status.text,
        "results": [r.view(i) for i, r in enumerate(node_results(job))],
        "inputDID": job.input_dids,
        "algoDID": spec.algorithm.did or None,
        "agreementId": None,
        "environment": job.environment,
        "stopRequested": bool(job.stopreq),
        "resources": resource_amounts(job),
        "isFree": True,
        "algoStartTimestamp": _stamp(started),
        "algoStopTimestamp": _stamp(stopped),
        "algoDuration": round(stopped - started, 3) if started and stopped else 0,
        "metadata": spec.metadata,
        "additionalViewers": spec.viewers or None,
        "terminationDetails": {
            "exitCode": job.exit_code,
            "OOMKilled": (job.termination_reason is TerminationReason.OOM) if final else None,
            # Beyond the node's: how and why it ended, in localcompute's words.
            "reason": None if job.termination_reason is None else str(job.termination_reason),
            "detail": (job.detail or job.status_text) if final else None,
        },
        "payment": None,
        "queueMaxWaitTime": _number(job.spec.queue_max_wait or 0),
        "buildStartTimestamp": "0",
        "buildStopTimestamp": "0",
        "maxJobDuration": _number(job.max_duration),
    }


# -- resources ------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """One resource of an environment, per job (max, min) and for all its jobs (total)."""

    id: str
    max: float
    min: float
    total: float


def resources_of(
    env: EnvironmentSettings, pool_totals: dict[str, float] | None = None
) -> list[Resource]:
    """An environment's resources in the node's units: cores, GiB, GPUs; the total is
    what max_jobs of its jobs would hold, never more than the pool has."""

    def total(rid: str, per_job: float) -> float:
        most = per_job * env.max_jobs
        return most if pool_totals is None else min(most, pool_totals.get(rid, most))

    return [
        Resource(r.id, r.max, r.min, total(r.id, r.per_job)) for r in policy.resource_limits(env)
    ]


def resource_amounts(job: Job) -> list[dict[str, Any]]:
    wanted = job.spec.resources
    amounts = (
        ("cpu", wanted.cpu),
        ("ram", wanted.ram_gb),
        ("disk", wanted.disk_gb),
        ("gpu", wanted.gpus),
    )
    return [{"id": rid, "amount": _number(a)} for rid, a in amounts if a is not None]


def node_environment(
    env: EnvironmentSettings,
    jobs: Iterable[Job],
    cpu_type: str,
    address: str,
    state: EnvironmentState,
) -> dict[str, Any]:
    """ocean-node's environment object (§5.1 of the reference) for one of ours.

    `inUse` is what the environment's running jobs hold of the host pool; `total` what
    its jobs could hold at most: max_jobs of them, within the pool."""
    unfinished = [j for j in jobs if j.environment == env.id and not j.is_final]
    running = [j for j in unfinished if j.status.holds_slot]
    queued = len(unfinished) - len(running)
    in_use = state.in_use
    free = env.price_min == 0
    resources = []
    for r in resources_of(env, state.pool_totals):
        entry: dict[str, Any] = {
            "id": r.id,
            "type": r.id,
            "total": _number(r.total),
            "max": _number(r.max),
            "min": _number(r.min),
            "inUse": _number(in_use.get(r.id, 0)),
        }
        if r.id == "cpu" and cpu_type:
            entry["description"] = cpu_type
        if r.id == "gpu" and env.gpu_type:
            entry["description"] = env.gpu_type
        resources.append(entry)
    access: dict[str, Any] = {"addresses": [], "accessLists": None}
    view: dict[str, Any] = {
        "id": env.id,
        "description": described(env.description, state),
        "available": state.unavailable is None,
        "diskQuota": state.disk_limit,
        "consumerAddress": address,
        "platform": {"architecture": platform.machine(), "os": "linux"},
        "access": access,
        "fees": None,
        "resources": resources,
        "runningJobs": len(running),
        "queuedJobs": queued,
        "runningfreeJobs": len(running) if free else 0,
        "queuedFreeJobs": queued if free else 0,
        "queMaxWaitTime": _number(env.queue_max_wait),
        "queMaxWaitTimeFree": _number(env.queue_max_wait),
        "runMaxWaitTime": 0,
        "runMaxWaitTimeFree": 0,
        "enableNetwork": env.algorithm_network,
        "storageExpiry": env.storage_expiry,
        "minJobDuration": 1,
        "maxJobDuration": _number(env.max_job_duration),
        "maxJobs": env.max_jobs,
    }
    if free:
        view["free"] = {
            "access": access,
            "storageExpiry": env.storage_expiry,
            "minJobDuration": 1,
            "maxJobDuration": _number(env.max_job_duration),
            "maxJobs": env.max_jobs,
            "resources": [
                {
                    "id": r.id,
                    "max": _number(r.max),
                    "min": _number(r.min),
                    "total": _number(r.total),
                    "inUse": _number(in_use.get(r.id, 0)),
                }
                for r in resources_of(env, state.pool_totals)
            ],
            "allowImageBuild": False,
        }
    return view


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value
