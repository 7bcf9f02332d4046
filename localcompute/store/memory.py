"""A job store in memory, for tests: the same promises as SQLite, nothing on disk.

A transaction works on a copy of the state and replaces the state with it only
when it ends without an error, so a failed precondition leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from localcompute.core import nonces
from localcompute.core.errors import (
    AgreementInUseError,
    JobNotFoundError,
    StoreError,
    TokenError,
    TransitionRefusedError,
)
from localcompute.core.events import JobEvent
from localcompute.core.jobspec import JobSpec
from localcompute.core.models import ConsumerCounts, Job, JobQuery, Preconditions, ResultFile
from localcompute.core.status import JobStatus, StopRequest, predecessors
from localcompute.store.base import Admission, PastUse
from localcompute.store.queries import SETTABLE


@dataclass
class _State:
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # in insertion order
    nonces: dict[str, Decimal] = field(default_factory=dict)
    revoked_tokens: set[str] = field(default_factory=set)
    events: list[JobEvent] = field(default_factory=list)
    last_event: int = 0  # ids are never reused, even once pruned

    def record(self, row: dict[str, Any]) -> None:
        """The row's status is new: its event, as SQLite's trigger writes it."""
        self.last_event += 1
        self.events.append(
            JobEvent(
                id=self.last_event,
                job_id=row["job_id"],
                owner=row["owner"],
                environment=row["environment"],
                status=row["status"],
                termination_reason=row["termination_reason"],
                exit_code=row["exit_code"],
                detail=row["detail"],
                at=time.time(),
            )
        )


def new_row(spec: JobSpec, *, max_duration: float, **fields: Any) -> dict[str, Any]:
    """A waiting job as a row of this store; `fields` set any column (for tests)."""
    phases = ("fetch", "algorithm", "filter", "publish")
    return {
        "job_id": uuid.uuid4().hex,
        "environment": spec.environment,
        "owner": spec.owner,
        "agreement_id": spec.agreement_id,
        "status": JobStatus.WARMING_UP,
        "stopreq": StopRequest.NONE,
        "removed": False,
        "delete_requested": False,
        "exit_code": None,
        "termination_reason": None,
        "detail": "",
        "date_created": time.time(),
        "date_finished": None,
        "max_duration": max_duration,
        "secret": uuid.uuid4().hex,
        "spec": spec,
        "results": [],
        "allocation": None,
        "algorithm_image": None,
        **{f"{p}_{e}_at": None for p in phases for e in ("started", "finished")},
        **fields,
    }


def _job(row: dict[str, Any]) -> Job:
    return Job.model_validate(row)


class MemoryTransaction:
    def __init__(self, state: _State) -> None:
        self._state = state

    async def check(self, preconditions: Preconditions) -> None:
        if preconditions.nonce_address is not None and preconditions.nonce is not None:
            await self.consume_nonce(preconditions.nonce_address, preconditions.nonce)
        agreement = preconditions.unused_agreement
        if agreement is not None and any(
            r["agreement_id"] == agreement and not r["status"].is_final
            for r in self._state.jobs.values()
        ):
            raise AgreementInUseError()
        if preconditions.valid_token in self._state.revoked_tokens:
            raise TokenError("Invalid token: it was invalidated")

    async def consumer_counts(self, owner: str, since: float) -> dict[str, ConsumerCounts]:
        counts: dict[str, ConsumerCounts] = {}
        for row in self._state.jobs.values():
            if row["owner"].lower() != owner.lower():
                continue
            was = counts.get(row["environment"], ConsumerCounts())
            recent = row["date_created"] >= since
            first = was.first_started
            if recent and (first is None or row["date_created"] < first):
                first = row["date_created"]
            counts[row["environment"]] = ConsumerCounts(
                waiting=was.waiting + (row["status"] == JobStatus.WARMING_UP),
                running=was.running + row["status"].holds_slot,
                started=was.started + recent,
                first_started=first,
            )
        return counts

    async def revoke_token(self, token_id: str, expires_at: float | None) -> None:
        self._state.revoked_tokens.add(token_id)

    async def consume_nonce(self, address: str, nonce: Decimal) -> None:
        last = self._state.nonces.get(address.lower(), Decimal(0))
        nonces.refuse_stale(last, nonce)
        self._state.nonces[address.lower()] = nonce

    async def insert_job(self, spec: JobSpec, *, max_duration: float) -> str:
        row = new_row(spec, max_duration=max_duration)
        self._state.jobs[row["job_id"]] = row
        self._state.record(row)
        return str(row["job_id"])

    async def request_stop(self, job_id: str, reason: StopRequest) -> Job | None:
        row = self._state.jobs.get(job_id)
        if row is None or row["status"].is_final or row["stopreq"] != StopRequest.NONE:
            return None
        row["stopreq"] = reason
        return _job(row)

    async def request_delete(self, job_id: str) -> None:
        row = self._state.jobs.get(job_id)
        if row is not None and not row["removed"]:
            row["delete_requested"] = True


class MemoryStore:
    """See the module docstring; `localcompute.store.base.Store` is what it promises."""

    def __init__(self) -> None:
        self._state = _State()
        self._lock = asyncio.Lock()
        self._instance = uuid.uuid4().hex[:12]
        self._listeners: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        return f"<MemoryStore jobs={len(self._state.jobs)}>"

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MemoryTransaction]:
        async with self._lock:
            draft = copy.deepcopy(self._state)
            yield MemoryTransaction(draft)
            self._state = draft
        self._tell()

    def _tell(self) -> None:
        for listener in self._listeners:
            listener()

    def on_events(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    async def events_after(
        self, after: int, *, owner: str | None = None, limit: int = 500
    ) -> list[JobEvent]:
        found = [
            e
            for e in self._state.events
            if e.id > after and (owner is None or e.owner.lower() == owner.lower())
        ]
        return found[:limit]

    async def event_range(self) -> tuple[int, int]:
        events = self._state.events
        return (events[0].id, events[-1].id) if events else (0, 0)

    async def prune_events(self, through: int) -> None:
        self._state.events = [e for e in self._state.events if e.id > through]

    async def instance_id(self) -> str:
        return self._instance

    def _row(self, job_id: str) -> dict[str, Any]:
        row = self._state.jobs.get(job_id)
        if row is None:
            raise JobNotFoundError(f"no job {job_id}")
        return row

    async def get(self, job_id: str) -> Job:
        return _job(self._row(job_id))

    async def find(self, query: JobQuery) -> list[Job]:
        found = [j for j in map(_job, self._state.jobs.values()) if query.matches(j)]
        if query.newest_first:
            found.reverse()
        return found if query.limit is None else found[: query.limit]

    async def transition(self, job_id: str, to: JobStatus, **fields: Any) -> Job:
        unknown = set(fields) - SETTABLE
        if unknown:
            raise StoreError(f"not settable by a transition: {sorted(unknown)}")
        async with self._lock:
            row = self._row(job_id)
            if row["status"] not in predecessors(to):
                raise TransitionRefusedError(
                    f"job {job_id} is at {int(row['status'])}: cannot move to {int(to)}"
                )
            row.update(fields, status=to)
            self._state.record(row)
        self._tell()
        return _job(row)

    async def admit(self, admission: Admission) -> list[Job]:
        async with self._lock:
            rows = list(self._state.jobs.values())
            active = [_job(r).claim for r in rows if r["status"].holds_slot]
            full = admission.full_environments(active)
            waiting = [
                _job(r).claim
                for r in rows
                if r["status"] == JobStatus.WARMING_UP
                and r["stopreq"] == StopRequest.NONE
                and r["environment"] not in full
            ]
            if not waiting:
                return []
            admitted = []
            for job_id, allocation in admission.plan(active, waiting):
                row = self._state.jobs[job_id]
                if row["status"] == JobStatus.WARMING_UP and row["stopreq"] == StopRequest.NONE:
                    row.update(status=JobStatus.JOB_STARTED, allocation=allocation)
                    self._state.record(row)
                    admitted.append(_job(row))
        self._tell()
        return admitted

    async def count_jobs(self) -> list[tuple[str, int, int]]:
        counts: dict[tuple[str, int], int] = {}
        for row in self._state.jobs.values():
            key = (row["environment"], int(row["status"]))
            counts[key] = counts.get(key, 0) + 1
        return [(env, status, n) for (env, status), n in sorted(counts.items())]

    async def count_waiting(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self._state.jobs.values():
            if row["status"] == JobStatus.WARMING_UP:
                counts[row["environment"]] = counts.get(row["environment"], 0) + 1
        return counts

    async def count_by_consumer(self) -> list[tuple[str, int, int]]:
        counts: dict[str, tuple[int, int]] = {}
        for row in self._state.jobs.values():
            if row["status"].is_final:
                continue
            waiting, running = counts.get(row["owner"].lower(), (0, 0))
            counts[row["owner"].lower()] = (
                waiting + (row["status"] == JobStatus.WARMING_UP),
                running + row["status"].holds_slot,
            )
        return [(owner, w, r) for owner, (w, r) in sorted(counts.items())]

    async def recent_use(self, since: float) -> list[PastUse]:
        return [
            (r["owner"].lower(), r["allocation"], r["fetch_started_at"], r["date_finished"])
            for r in self._state.jobs.values()
            if r["status"].is_final
            and r["allocation"] is not None
            and (r["date_finished"] or 0) >= since
        ]

    async def slots_in_use(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self._state.jobs.values():
            if row["status"].holds_slot:
                counts[row["environment"]] = counts.get(row["environment"], 0) + 1
        return counts

    async def active_jobs(self) -> list[Job]:
        return [_job(r) for r in self._state.jobs.values() if r["status"].holds_slot]

    async def pending_deletes(self) -> list[Job]:
        return [
            _job(r)
            for r in self._state.jobs.values()
            if r["delete_requested"] and not r["removed"] and r["status"].is_final
        ]

    async def expire_waiting(self, job_id: str) -> Job | None:
        async with self._lock:
            row = self._row(job_id)
            if row["status"] != JobStatus.WARMING_UP or row["stopreq"] != StopRequest.NONE:
                return None
            row["stopreq"] = StopRequest.TIME_LIMIT
            return _job(row)

    async def request_stop(self, job_id: str, reason: StopRequest) -> Job | None:
        async with self.transaction() as tx:
            return await tx.request_stop(job_id, reason)

    async def set_results(self, job_id: str, results: list[ResultFile]) -> Job:
        row = self._row(job_id)
        row["results"] = list(results)
        return _job(row)

    async def mark_removed(self, job_id: str) -> Job:
        row = self._row(job_id)
        if not row["status"].is_final:
            raise TransitionRefusedError(
                f"job {job_id} is at {int(row['status'])}: only a finished job can be removed"
            )
        row.update(removed=True, results=[])
        return _job(row)

    async def get_nonce(self, address: str) -> Decimal | None:
        return self._state.nonces.get(address.lower())

    async def token_revoked(self, token_id: str) -> bool:
        return token_id in self._state.revoked_tokens
