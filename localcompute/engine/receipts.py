"""Every final job's receipt: what ran, on what, with what result, signed by the
provider's key; written as the job's last result, just before its final status.

The statement is in-toto v1 with a SLSA Provenance v1 predicate (core/receipt.py reads
it back); the subjects are every published result (each annotated with its result
type, so that outputs can be told from logs); the facts come from the job's row (what it
asked, what the pool gave it, the image its algorithm ran) and from the fetch's log
(every file it wrote, by sha256). Blocking: called off the loop.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any

from localcompute import __version__
from localcompute.core.dsse import seal
from localcompute.core.models import NODE_FILENAMES, Job, ResultFile, ResultType
from localcompute.core.provenance import Fetched
from localcompute.core.receipt import PROVENANCE_TYPE, RECEIPT_NAME, STATEMENT_TYPE, build_type
from localcompute.core.settings import Settings
from localcompute.core.signing import Key
from localcompute.core.status import TerminationReason
from localcompute.engine.outcome import FinalOutcome
from localcompute.runtime.quota import DiskQuota
from localcompute.runtime.workspace import Workspace, file_digest, text_or_empty


@dataclass(frozen=True)
class Receipts:
    """What signs a job's receipt and what the receipt says of the provider."""

    key: Key
    settings: Settings
    disk: DiskQuota

    def write(
        self, ws: Workspace, job: Job, outcome: FinalOutcome, results: list[ResultFile]
    ) -> ResultFile:
        """Write the receipt (atomically: a crash leaves the old one or the new one) and
        return it as the job's last result."""
        statement = self.statement(ws, job, outcome, results, finished_on=time.time())
        payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
        envelope = json.dumps(seal(payload, self.key), indent=2).encode() + b"\n"
        path = ws.adminlogs / RECEIPT_NAME
        temp = path.with_name(f".{RECEIPT_NAME}.part")
        ws.adminlogs.mkdir(parents=True, exist_ok=True)
        temp.write_bytes(envelope)
        os.replace(temp, path)
        return ResultFile(
            filename=RECEIPT_NAME,
            filesize=len(envelope),
            type=ResultType.RECEIPT,
            sha256=hashlib.sha256(envelope).hexdigest(),  # the bytes just written
            path=str(path.relative_to(ws.root)),
        )

    def statement(
        self,
        ws: Workspace,
        job: Job,
        outcome: FinalOutcome,
        results: list[ResultFile],
        *,
        finished_on: float,
    ) -> dict[str, Any]:
        node = job.spec.api == "node"
        subjects = [
            {
                "name": NODE_FILENAMES.get(r.type, r.filename) if node else r.filename,
                "digest": {"sha256": r.sha256},
                "annotations": {"resultType": r.type, "size": r.filesize},
            }
            for r in results
        ]
        fetched = Fetched.from_log(text_or_empty(ws.admin_log("configure.log")))
        return {
            "_type": STATEMENT_TYPE,
            "subject": subjects,
            "predicateType": PROVENANCE_TYPE,
            "predicate": {
                "buildDefinition": {
                    "buildType": build_type(job.spec.api),
                    "externalParameters": _asked(job, fetched),
                    "internalParameters": self._applied(job),
                    "resolvedDependencies": _dependencies(job, fetched),
                },
                "runDetails": {
                    "builder": {"id": self.key.address, "version": {"localcompute": __version__}},
                    "metadata": _metadata(job, finished_on),
                    "byproducts": _byproducts(ws, job, outcome),
                },
            },
        }

    def _applied(self, job: Job) -> dict[str, Any]:
        """What the provider applied: the allocation the pool gave, the environment's rules."""
        env = self.settings.environment(job.environment)
        applied: dict[str, Any] = {
            "runtime": self.settings.runtime.kind,
            "maxDurationSeconds": job.max_duration,
            "network": "egress" if env is not None and env.algorithm_network else "none",
            "inputsReadOnly": True,
            "pidsLimit": self.settings.docker.pids_limit,
            "diskQuota": {"mechanism": self.disk.mechanism, "hard": self.disk.hard},
        }
        alloc = job.allocation
        if alloc is not None:
            applied.update(
                cpu=alloc.cpu,
                ramBytes=alloc.ram_bytes,
                diskBytes=alloc.disk_bytes,
                gpus=list(alloc.gpus),
            )
            if alloc.pinned:
                applied["cpuset"] = alloc.cpuset_text
            else:
                applied["cpuFraction"] = alloc.cpu
            if alloc.node:
                applied["node"] = alloc.node
        return applied


def _asked(job: Job, fetched: Fetched) -> dict[str, Any]:
    """What the consumer asked: the environment, the algorithm, the inputs."""
    algorithm = job.spec.algorithm
    asked: dict[str, Any] = {
        "environment": job.environment,
        "algorithm": {
            "image": algorithm.image,
            "tag": algorithm.tag,
            "entrypoint": algorithm.entrypoint,
            **({"checksum": algorithm.checksum} if algorithm.checksum else {}),
            **({"did": algorithm.did} if algorithm.did else {}),
        },
        "inputs": job.input_dids,
    }
    if fetched.custom_data is not None:
        asked["customDataSha256"] = fetched.custom_data.sha256
    wanted = job.spec.resources.model_dump(exclude_none=True)
    if wanted:
        asked["resources"] = wanted
    if job.spec.max_duration is not None:
        asked["maxDuration"] = job.spec.max_duration
    return asked


def _dependencies(job: Job, fetched: Fetched) -> list[dict[str, Any]]:
    """The image by content, the algorithm's code and every input file, by sha256."""
    found: list[dict[str, Any]] = []
    image = job.algorithm_image
    if image is not None:
        found.append(
            {
                "name": job.spec.algorithm.image_ref,
                "digest": {"sha256": image.id.removeprefix("sha256:")},
                "annotations": {
                    "kind": "image",
                    "imageId": image.id,
                    "repoDigests": list(image.repo_digests),
                },
            }
        )
    if fetched.algorithm is not None:
        code = job.spec.algorithm
        found.append(
            {
                "name": "algorithm",
                "digest": {"sha256": fetched.algorithm.sha256},
                **({"uri": code.url} if code.url and not code.uses_rawcode else {}),
                "annotations": {
                    "kind": "algorithm",
                    "size": fetched.algorithm.size,
                    **({"did": code.did} if code.did else {}),
                },
            }
        )
    for item in fetched.inputs:
        found.append(
            {
                "name": f"inputs/{item.input}/{item.file}",
                "digest": {"sha256": item.sha256},
                "annotations": {
                    "kind": "input",
                    "did": item.did,
                    "index": item.input,
                    "file": item.file,
                    "size": item.size,
                },
            }
        )
    return found


def _metadata(job: Job, finished_on: float) -> dict[str, Any]:
    meta = {"invocationId": job.job_id, "finishedOn": rfc3339(finished_on)}
    if job.algorithm_started_at is not None:
        meta["startedOn"] = rfc3339(job.algorithm_started_at)
    return meta


def _byproducts(ws: Workspace, job: Job, outcome: FinalOutcome) -> list[dict[str, Any]]:
    """The algorithm's log by sha256, and how the job ended."""
    found: list[dict[str, Any]] = []
    log = ws.published_algorithm_log
    if job.algorithm_started_at is not None and log.exists():
        size, sha = file_digest(log)
        found.append(
            {"name": "algorithm.log", "digest": {"sha256": sha}, "annotations": {"size": size}}
        )
    found.append(
        {
            "name": "outcome",
            "annotations": {
                "status": int(outcome.status),
                "statusText": outcome.status_text,
                "terminationReason": str(outcome.reason) if outcome.reason else None,
                "exitCode": job.exit_code,
                "oomKilled": outcome.reason is TerminationReason.OOM,
                **({"detail": outcome.detail} if outcome.detail else {}),
            },
        }
    )
    return found


def rfc3339(epoch: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))
    return f"{whole}.{int(epoch % 1 * 1000):03d}Z"
