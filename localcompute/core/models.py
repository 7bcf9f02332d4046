"""The job model that both API dialects are views of: `Job`, a row of the store, frozen,
built by column name; what it holds (its allocation, its results); the queries and the
preconditions of the store's actions. What a caller asks to run is core/jobspec.py.
"""

from __future__ import annotations

import json
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import Field

from localcompute.core.jobspec import (
    Frozen,
    JobResources,
    JobSpec,
)
from localcompute.core.provenance import RanImage
from localcompute.core.settings import EnvironmentSettings
from localcompute.core.status import JobStatus, StopRequest, TerminationReason, status_text


class Preconditions(Frozen):
    """What must hold for an action to be recorded, checked in the action's transaction.

    If one fails nothing of the action is stored: a refused request uses up no nonce.
    """

    nonce_address: str | None = None
    nonce: Decimal | None = Field(None, description="Must exceed the last one from the address.")
    unused_agreement: str | None = Field(
        None, description="An agreement id that no unfinished job may hold."
    )
    valid_token: str | None = Field(None, description="An auth token id not invalidated.")

    @classmethod
    def signed(cls, address: str, nonce: Decimal, **more: Any) -> Preconditions:
        return cls(nonce_address=address, nonce=nonce, **more)


class ConsumerCounts(Frozen):
    """One consumer's jobs in one environment, as its job limits count them."""

    waiting: int = 0
    running: int = 0  # holding a slot
    started: int = 0  # accepted since the time asked about
    first_started: float | None = None  # the oldest of those


class JobQuery(Frozen):
    """Which jobs: every filter given must hold. Owners compare case-blind."""

    job_id: str | None = None
    owner: str | None = None
    agreement_id: str | None = None
    input_did: str | None = None
    environment: str | None = None
    unfinished: bool = False
    finished: bool = False
    finished_before: float | None = None  # epoch seconds: ended then or earlier
    include_removed: bool = True
    status: JobStatus | None = None
    job_id_prefix: str | None = None  # ids that start with it
    newest_first: bool = False  # else oldest first
    limit: int | None = Field(None, gt=0)  # at most this many (the first ones in order)

    def matches(self, job: Job) -> bool:
        before, ended = self.finished_before, job.date_finished
        prefix = self.job_id_prefix
        return (
            (self.job_id is None or job.job_id == self.job_id)
            and (prefix is None or job.job_id.startswith(prefix))
            and (self.status is None or job.status == self.status)
            and (self.owner is None or job.owner.lower() == self.owner.lower())
            and (self.agreement_id is None or job.agreement_id == self.agreement_id)
            and (self.input_did is None or self.input_did in job.input_dids)
            and (self.environment is None or job.environment == self.environment)
            and not (self.unfinished and job.is_final)
            and not (self.finished and not job.is_final)
            and (before is None or (ended is not None and ended <= before))
            and (self.include_removed or not job.removed)
        )


class ResultType(StrEnum):
    """What a result is, in Ocean's words (its spelling too: "configrationLog"), in the
    order of a job's results list."""

    OUTPUT = "output"
    ALGORITHM_LOG = "algorithmLog"
    CONFIGURATION_LOG = "configrationLog"
    FILTERING_LOG = "filteringLog"
    PUBLISH_LOG = "publishLog"
    RECEIPT = "receipt"  # receipt.json, the job's signed receipt: always the last


# Where Ocean Node's dialect names a result otherwise: the receipt names each result as
# the job's own dialect lists it, so that a folder of downloaded results checks against it.
NODE_FILENAMES: dict[str, str] = {ResultType.CONFIGURATION_LOG: "configuration.log"}


class ResultFile(Frozen):
    """One published result: its index in `Job.results` is its computeResult index."""

    filename: str
    filesize: int
    type: str
    sha256: str
    path: str  # relative to the job folder; never shown to clients


class Allocation(Frozen):
    """What the host pool gave one job at admission: held until its containers are gone.

    Stored with the job, so the pool after a restart is the sum of the stored ones."""

    cpu: float = Field(gt=0, description="CPUs (NanoCpus); whole cores when pinned.")
    cpuset: list[int] = Field(default_factory=list, description="Cores the job runs on.")
    ram_bytes: int = Field(gt=0)
    disk_bytes: int = Field(ge=0)
    gpus: list[str] = Field(default_factory=list, description="GPU devices, by host name.")
    node: str = Field(
        "", description="The runtime's node the job runs on; '': the server's own host."
    )

    @property
    def pinned(self) -> bool:
        return bool(self.cpuset) and float(self.cpu).is_integer() and len(self.cpuset) == self.cpu

    @property
    def cpuset_text(self) -> str:
        return ",".join(str(c) for c in self.cpuset)


GIB = 1024**3
# The least disk a job gets, whatever it asks: a job cannot work in none.
MIN_DISK_GB = 0.01


class Amounts(Frozen):
    """What one job of an environment gets: its amounts, each lowered by the job's request."""

    cpu: float
    ram_bytes: int
    disk_bytes: int
    gpus: int

    @classmethod
    def of(cls, env: EnvironmentSettings, wanted: JobResources | None = None) -> Amounts:
        wanted = wanted or JobResources()
        cpu = env.cpu if wanted.cpu is None else min(env.cpu, wanted.cpu)
        ram_gb = env.ram_gb if wanted.ram_gb is None else min(env.ram_gb, wanted.ram_gb)
        disk_gb = env.disk_gb if wanted.disk_gb is None else min(env.disk_gb, wanted.disk_gb)
        gpus = env.gpu_count if wanted.gpus is None else min(env.gpu_count, wanted.gpus)
        return cls(
            cpu=cpu,
            ram_bytes=int(ram_gb * GIB),
            disk_bytes=int(max(disk_gb, MIN_DISK_GB) * GIB),
            gpus=gpus,
        )


def held_by(
    allocation: Allocation | None, env: EnvironmentSettings | None, wanted: JobResources
) -> Allocation:
    """What a job holds: what the pool gave it; for a job admitted before the pool
    existed, its environment's amounts on no particular core (and next to nothing when
    its environment is no longer configured: it is ended, not run)."""
    if allocation is not None:
        return allocation
    if env is None:
        return Allocation(cpu=0.001, ram_bytes=1, disk_bytes=0)
    amounts = Amounts.of(env, wanted)
    return Allocation(cpu=amounts.cpu, ram_bytes=amounts.ram_bytes, disk_bytes=amounts.disk_bytes)


class AdmissionView(Frozen):
    """A job as admission sees it: what it asks for, and what it holds once admitted.
    Read alone (not the whole job) so that a long queue costs admission little."""

    job_id: str
    environment: str
    resources: JobResources = Field(default_factory=JobResources)
    allocation: Allocation | None = None
    owner: str = ""  # lower case: fair turns are per consumer
    date_created: float = 0.0
    held_since: float | None = None  # when its fetch began: its use of the pool accrues

    @classmethod
    def from_row(cls, row: Any) -> AdmissionView:
        return cls(
            job_id=row["job_id"],
            environment=row["environment"],
            owner=row["owner"],
            date_created=row["date_created"],
            held_since=row["fetch_started_at"],
            resources=JobResources.model_validate_json(row["resources"] or "{}"),
            allocation=(
                Allocation.model_validate_json(row["allocation"]) if row["allocation"] else None
            ),
        )


class Job(Frozen):
    job_id: str
    environment: str
    owner: str
    agreement_id: str
    status: JobStatus
    stopreq: StopRequest
    removed: bool
    delete_requested: bool  # removed once the job ends
    exit_code: int | None
    termination_reason: TerminationReason | None
    detail: str  # why the job ended as it did, in words
    date_created: float
    date_finished: float | None
    max_duration: float
    secret: str
    spec: JobSpec
    results: list[ResultFile]
    fetch_started_at: float | None
    fetch_finished_at: float | None
    algorithm_started_at: float | None
    algorithm_finished_at: float | None
    filter_started_at: float | None
    filter_finished_at: float | None
    publish_started_at: float | None
    publish_finished_at: float | None
    allocation: Allocation | None = None  # from admission; None while it waits
    algorithm_image: RanImage | None = None  # what the algorithm's container ran

    @classmethod
    def from_row(cls, row: Any) -> Job:
        data = {key: row[key] for key in row.keys()}  # noqa: SIM118 - sqlite rows
        data["spec"] = JobSpec.model_validate_json(data["spec"])
        data["results"] = json.loads(data["results"] or "[]")
        raw = data.get("allocation")
        data["allocation"] = Allocation.model_validate_json(raw) if raw else None
        raw = data.get("algorithm_image")
        data["algorithm_image"] = RanImage.model_validate_json(raw) if raw else None
        data.pop("seq", None)
        return cls.model_validate(data)

    @property
    def is_final(self) -> bool:
        return self.status.is_final

    @property
    def status_text(self) -> str:
        return status_text(self.status, self.termination_reason, self.detail)

    @property
    def deadline(self) -> float | None:
        """When the algorithm is killed: max_duration after it started."""
        started = self.algorithm_started_at
        return None if started is None else started + self.max_duration

    @property
    def claim(self) -> AdmissionView:
        return AdmissionView(
            job_id=self.job_id,
            environment=self.environment,
            resources=self.spec.resources,
            allocation=self.allocation,
            owner=self.owner.lower(),
            date_created=self.date_created,
            held_since=self.fetch_started_at,
        )

    @property
    def queue_deadline(self) -> float | None:
        """When a job still waiting for a slot ends unrun; None: it waits as long as it takes."""
        wait = self.spec.queue_max_wait
        return self.date_created + wait if wait else None

    @property
    def input_dids(self) -> list[str]:
        return [i.did for i in self.spec.inputs]

    def may_read_results(self, address: str) -> bool:
        """The owner and the job's viewers may fetch results; addresses compare case-blind."""
        wanted = address.lower()
        return wanted == self.owner.lower() or wanted in (v.lower() for v in self.spec.viewers)

    def __repr__(self) -> str:
        return f"<Job {self.job_id} {self.environment} status={int(self.status)}>"
