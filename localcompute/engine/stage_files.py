"""What a job's fetch downloads from this server, and what its filter uploads to it, where
the node that runs the job shares no disk with the server (Swarm).

Each request carries the token of its job and stage (core/stagekey.py) and is taken only
while the job is at that stage: the fetch's token opens the job's spec and the dataset
owner's local files while the job configures its volumes, the filter's lets it upload
while the job filters its results. An upload lands in the job's folder on the server, as
the local engine's filter would have written it: each result is checked against the
sha256 the filter says, and the manifest, uploaded last, only when every result it lists
arrived whole; so publishing is the same for either runtime.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from localcompute.core.errors import (
    AccessDeniedError,
    InvalidJobError,
    JobConflictError,
    JobNotFoundError,
)
from localcompute.core.models import Job
from localcompute.core.stagekey import StageKey
from localcompute.core.status import JobStatus
from localcompute.runtime.workspace import Workspace, file_digest
from localcompute.store import Store

FETCH, FILTER = "fetch", "filter"
GIB = 1024**3
# What an upload may be past twice the job's disk, for a small job: see _limit.
SLACK_BYTES = GIB
_STAGE_STATUS = {FETCH: JobStatus.CONFIGURING_VOLUMES, FILTER: JobStatus.FILTERING_RESULTS}


class StageFiles:
    def __init__(
        self,
        store: Store,
        data_dir: Path,
        key: StageKey,
        log_limit: int,
        disk_limit: Callable[[Job], int],
    ) -> None:
        self.store = store
        self.data_dir = data_dir
        self.key = key
        self.log_limit = log_limit
        self.disk_limit = disk_limit  # bytes a job may write (stepkit.disk_limit)

    async def _job(self, job_id: str, stage: str, token: str) -> tuple[Job, Workspace]:
        if not self.key.allows(job_id, stage, token):
            raise AccessDeniedError(f"not the {stage} token of job {job_id}")
        job = await self.store.get(job_id)
        if job.status != _STAGE_STATUS[stage]:
            raise JobConflictError(f"job {job_id} is not at its {stage} ({job.status_text})")
        return job, Workspace.of(self.data_dir, job_id)

    async def spec(self, job_id: str, token: str) -> Path:
        """The job's fetch.json."""
        _, ws = await self._job(job_id, FETCH, token)
        return ws.fetch_spec

    async def source(self, job_id: str, number: int, token: str) -> Path:
        """The dataset owner's local file `number`, in the order the fetch document names them."""
        job, _ = await self._job(job_id, FETCH, token)
        paths = job.spec.local_paths
        if not 0 <= number < len(paths):
            raise JobNotFoundError(f"job {job_id} has no local file {number}")
        return Path(paths[number])

    async def receive(
        self,
        job_id: str,
        token: str,
        name: str,
        sha256: str | None,
        body: AsyncIterator[bytes],
    ) -> None:
        """One file from the filter: results/<file>, logs/algorithm.log or meta/filter.json."""
        job, ws = await self._job(job_id, FILTER, token)
        limit = self._limit(job)
        area, _, filename = name.partition("/")
        if area == "results" and _plain_name(filename):
            if not sha256:
                raise InvalidJobError("a result needs its X-Content-Sha256")
            await _write(ws.results / filename, body, limit, sha256.lower())
        elif name == "logs/algorithm.log":
            own = ws.meta / "algorithm.own.log"
            await _write(own, body, limit, None)
            await asyncio.to_thread(
                _prepend_own_log, own, ws.published_algorithm_log, self.log_limit
            )
        elif name == "meta/filter.json":
            partial = ws.meta / "filter.json.partial"
            await _write(partial, body, 16 * 1024 * 1024, None)
            await asyncio.to_thread(_accept_manifest, partial, ws)
        else:
            raise JobNotFoundError(f"the filter cannot upload {name!r}")

    def _limit(self, job: Job) -> int:
        """The most one upload may be: the job's disk twice, or with 1 GiB more if that is
        more. A node's disk quota is soft (its meter is read every half second, through
        the manager), so a job stopped past its disk may have written more than it; this
        bounds what it can make the server keep."""
        disk = self.disk_limit(job)
        return max(2 * disk, disk + SLACK_BYTES)


def _plain_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\x00" not in name and name not in (".", "..")


async def _write(dest: Path, body: AsyncIterator[bytes], limit: int, sha256: str | None) -> None:
    """`body` into `dest`, whole or not at all: past `limit` bytes, or with another
    sha256 than said, nothing is left."""
    partial = dest.with_name(dest.name + ".upload")
    handle = await asyncio.to_thread(partial.open, "wb")
    digest, size = hashlib.sha256(), 0
    try:
        async for chunk in body:
            size += len(chunk)
            if size > limit:
                raise InvalidJobError(f"{dest.name}: more than the job's {limit} bytes")
            digest.update(chunk)
            await asyncio.to_thread(handle.write, chunk)
        await asyncio.to_thread(handle.close)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise InvalidJobError(f"{dest.name}: its sha256 is {digest.hexdigest()}, not {sha256}")
        await asyncio.to_thread(os.replace, partial, dest)
    finally:
        handle.close()
        await asyncio.to_thread(partial.unlink, missing_ok=True)


def _prepend_own_log(own: Path, published: Path, limit: int) -> None:
    """algorithm.log as published: what the algorithm wrote to its own log, then its
    output (as the local engine makes it, engine/livelog.move_log)."""
    with own.open("rb") as f:
        head = f.read(limit)
    tail = published.read_bytes() if published.is_file() else b""
    partial = published.with_name(published.name + ".partial")
    partial.write_bytes(head + tail)
    os.replace(partial, published)
    own.unlink()


def _accept_manifest(partial: Path, ws: Workspace) -> None:
    """The manifest becomes the job's only when every result it lists is there, with the
    size and sha256 it says."""
    try:
        data = json.loads(partial.read_text(encoding="utf-8"))
        entries = data["results"]
        for entry in entries:
            name, size, sha = entry["filename"], entry["filesize"], entry["sha256"]
            if not _plain_name(name):
                raise InvalidJobError(f"the manifest names {name!r}")
            try:
                found = file_digest(ws.results / name)
            except OSError:
                raise InvalidJobError(
                    f"the manifest lists {name}, which was not uploaded"
                ) from None
            if found != (size, sha):
                raise InvalidJobError(f"{name} is not what the manifest says")
    except (ValueError, KeyError, TypeError) as e:
        partial.unlink(missing_ok=True)
        raise InvalidJobError(f"the manifest cannot be read: {e}") from None
    except InvalidJobError:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, ws.filter_manifest)
