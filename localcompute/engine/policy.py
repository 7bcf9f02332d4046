"""What a job may ask of an environment, beyond what JobSpec itself checks: the rules every
dialect applies alike (a handler parses a request, asks these, builds the JobSpec).
Ocean Node's words where its clients read them ("Not enough cpu resources…")."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from localcompute.core.errors import InvalidJobError, RefusedError
from localcompute.core.jobspec import JobResources, JobSpec
from localcompute.core.settings import EnvironmentSettings

METADATA_MAX_CHARS = 1024


@dataclass(frozen=True)
class ResourceLimit:
    """One resource of an environment in the node's units (cores, GiB, GPUs): what a job
    gets without asking (`per_job`), the least and the most it may ask."""

    id: str
    per_job: float
    min: float
    max: float


def resource_limits(env: EnvironmentSettings) -> list[ResourceLimit]:
    limits = [
        ResourceLimit("cpu", env.cpu, min(1.0, env.cpu), env.cpu),
        ResourceLimit("ram", env.ram_gb, min(1.0, env.ram_gb), env.ram_gb),
        ResourceLimit("disk", env.disk_gb, 0, env.disk_gb),
    ]
    if env.gpu_count:
        limits.append(ResourceLimit("gpu", env.gpu_count, 0, env.gpu_count))
    return limits


def resources(env: EnvironmentSettings, wanted: Sequence[tuple[str, float]]) -> JobResources:
    """The job's amounts: each between the environment's min and max; missing ones at the
    environment's full per-job amount (what a job without a request gets)."""
    known = {r.id: r for r in resource_limits(env)}
    amounts = {rid: r.max for rid, r in known.items()}
    for i, (rid, amount) in enumerate(wanted):
        limit = known.get(rid)
        if limit is None:
            raise RefusedError(
                f"resources[{i}].id: environment {env.id} has no resource {rid!r}; "
                f"it has {', '.join(known)}"
            )
        if amount > limit.max:
            raise RefusedError(
                f"Not enough {rid} resources. Requested {amount:g}, but max is {limit.max:g}"
            )
        if amount < limit.min:
            raise RefusedError(
                f"Not enough {rid} requested. Requested {amount:g}, but min is {limit.min:g}"
            )
        amounts[rid] = amount
    gpus = amounts.get("gpu")
    if gpus is not None and not float(gpus).is_integer():
        raise RefusedError(f"gpu: a whole number of GPUs, not {gpus:g}")
    return JobResources(
        cpu=amounts["cpu"],
        ram_gb=amounts["ram"],
        disk_gb=amounts["disk"],
        gpus=int(gpus) if gpus is not None else None,
    )


def free_tier(env: EnvironmentSettings) -> None:
    """Free compute runs only in an environment without a price: paid compute needs a
    chain (escrow, fees), which this server has not."""
    if env.price_min != 0:
        raise RefusedError(
            f"environment {env.id} has no free tier (price_min {env.price_min:g}); "
            "paid compute needs a chain, which this server has not"
        )


def duration(env: EnvironmentSettings, wanted: float | None) -> None:
    """A job may ask less time than its environment allows, never more."""
    if wanted is not None and wanted > env.max_job_duration:
        raise RefusedError(
            f"maxJobDuration {wanted:g} s is over the environment's {env.max_job_duration:g} s"
        )


def metadata(value: object) -> None:
    """What a client attaches to a job is kept with it, so it is bounded."""
    if value is not None and len(json.dumps(value)) > METADATA_MAX_CHARS:
        raise RefusedError(f"metadata is over {METADATA_MAX_CHARS} characters of JSON")


async def local_files(spec: JobSpec) -> None:
    """InvalidJobError when a local file of the job is missing; the message names the
    dataset by DID, never the file's path, which is the provider's to know."""
    for item in spec.inputs:
        for source in item.files:
            if source.path is not None and not await asyncio.to_thread(Path(source.path).is_file):
                raise InvalidJobError(f"a file of dataset {item.did} is missing on this host")
    algo = spec.algorithm
    local_algorithm = algo.path is not None and not algo.uses_rawcode
    if local_algorithm and not await asyncio.to_thread(Path(str(algo.path)).is_file):
        raise InvalidJobError(f"the file of algorithm {algo.did} is missing on this host")
