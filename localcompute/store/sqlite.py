"""The job store: SQLite through aiosqlite; its statements are in queries.py.

SQLite in WAL mode through aiosqlite (one thread owns the connection). Status
changes are compare-and-set: an UPDATE that names the statuses a job may come
from, so two actors can never move one job twice and a finished job never
changes again. Multi-statement work runs under one lock in one `Transaction`, whose
methods are the only writes inside it; the driver and its errors never leave here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiosqlite
from pydantic import BaseModel

from localcompute.core.errors import (
    JobNotFoundError,
    StoreError,
    TransitionRefusedError,
)
from localcompute.core.events import JobEvent
from localcompute.core.lru import Lru
from localcompute.core.models import Allocation, Job, JobQuery, ResultFile
from localcompute.core.status import (
    JobStatus,
    StopRequest,
    TerminationReason,
)
from localcompute.store.base import Admission, PastUse
from localcompute.store.queries import (
    MIGRATIONS,
    SETTABLE,
    SQL_ACTIVE_JOBS,
    SQL_COUNT_BY_CONSUMER,
    SQL_COUNT_JOBS,
    SQL_COUNT_SLOTS,
    SQL_COUNT_WAITING,
    SQL_EVENT_RANGE,
    SQL_EVENTS_AFTER,
    SQL_EXPIRE_WAITING,
    SQL_GET_JOB,
    SQL_GET_META,
    SQL_GET_NONCE,
    SQL_MARK_REMOVED,
    SQL_OWNER_EVENTS_AFTER,
    SQL_PENDING_DELETES,
    SQL_PRUNE_EVENTS,
    SQL_RECENT_USE,
    SQL_SET_META,
    SQL_SET_RESULTS,
    SQL_TOKEN_REVOKED,
    event_of,
    select_jobs,
    statements,
    update_status,
)
from localcompute.store.transaction import Transaction, rows_of

log = logging.getLogger("localcompute.jobs")

# Finished jobs kept in memory for status reads. Clients poll the jobs that have just
# ended, so a few dozen serve them; each takes about 10 KiB, and a bound of tens of
# thousands made a long-running server grow with every job (bench/memory_soak.py).
FINISHED_CACHE_SIZE = 64


class JobStore:
    """Jobs, their statuses and the instance identity, in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        # aiosqlite serialises statements, not transactions: the lock keeps one
        # coroutine's BEGIN…COMMIT from interleaving with another's statements.
        self._tx_lock = asyncio.Lock()
        # Finished jobs, by id, the ones read or written last: they change only through
        # this store's own writes (their results, removal, a delete request), which
        # refresh or drop them here. Status polls of jobs that have just ended, most of
        # a server's traffic, then touch no SQL.
        self._finished: Lru[str, Job] = Lru(FINISHED_CACHE_SIZE)
        # Slots in use per environment, as last counted; any status write drops it.
        self._slots: dict[str, int] | None = None
        self._writes = 0  # status writes so far: a count read across one is not kept
        self._listeners: list[Callable[[], None]] = []  # told of each write with events

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = await aiosqlite.connect(self.path, isolation_level=None)
            db.row_factory = aiosqlite.Row
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=FULL")
            await db.execute("PRAGMA busy_timeout=5000")
            await db.execute("PRAGMA foreign_keys=ON")
        except Exception as e:
            raise StoreError(f"cannot open the job store {self.path}: {e}") from e
        self._db = db
        await self._migrate()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("the job store is not open")
        return self._db

    async def _migrate(self) -> None:
        async with self.transaction() as tx:
            [row] = await tx._sql("PRAGMA user_version")
            version = int(row[0])
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"{self.path} has schema version {version}; "
                    f"this localcompute knows up to {len(MIGRATIONS)}"
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in statements(script):
                    await tx._sql(statement)
                await tx._sql(f"PRAGMA user_version = {number}")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on any error, one at a time."""
        async with self._tx_lock:
            db = self.db
            await rows_of(db, "BEGIN IMMEDIATE")
            tx = Transaction(db)
            try:
                yield tx
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            await rows_of(db, "COMMIT")
            for job_id in tx.touched:
                self._finished.discard(job_id)
            if tx.touched:
                self._slots_changed()

    async def _fetch_all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        async with self._tx_lock:
            return await rows_of(self.db, sql, params)

    async def _fetch_one(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> Any:
        rows = await self._fetch_all(sql, params)
        return rows[0] if rows else None

    # -- instance identity --------------------------------------------------

    async def instance_id(self) -> str:
        """A random id made once per store; it labels this server's containers."""
        async with self.transaction() as tx:
            await tx._sql(SQL_SET_META, ("instance_id", uuid.uuid4().hex[:12]))
            [row] = await tx._sql(SQL_GET_META, ("instance_id",))
        return str(row[0])

    # -- jobs -----------------------------------------------------------------

    def _slots_changed(self) -> None:
        """A status may have changed: counts go stale, and a new event may be written."""
        self._slots = None
        self._writes += 1
        for listener in self._listeners:
            listener()

    def _written(self, row: Any) -> Job:
        """The job of a row just written: counted slots may have changed. Every status
        change passes here, so here each is logged, once, with its job id."""
        self._slots_changed()
        job = self._seen(row)
        log.info("job %s at %d: %s", job.job_id, int(job.status), job.status_text)
        return job

    def _seen(self, row: Any) -> Job:
        """The job of a row just read or written; a finished one is kept for later reads."""
        job = Job.from_row(row)
        if job.is_final:
            self._finished.put(job.job_id, job)
        else:
            self._finished.discard(job.job_id)
        return job

    async def get(self, job_id: str) -> Job:
        cached = self._finished.get(job_id)
        if cached is not None:
            return cached
        row = await self._fetch_one(SQL_GET_JOB, (job_id,))
        if row is None:
            raise JobNotFoundError(f"no job {job_id}")
        return self._seen(row)

    async def find(self, query: JobQuery) -> list[Job]:
        """Jobs matching every filter of `query`, in its order (oldest first by default)."""
        cached = None if query.job_id is None else self._finished.get(query.job_id)
        if cached is not None:
            return [cached] if query.matches(cached) else []
        sql, params = select_jobs(query)
        rows = await self._fetch_all(sql, params)
        # Only a read of one job is kept: a list (an owner's jobs, the expiry's) would
        # push out the jobs just polled.
        jobs = [self._seen(r) if query.job_id else Job.from_row(r) for r in rows]
        return [j for j in jobs if query.matches(j)]

    async def transition(
        self,
        job_id: str,
        to: JobStatus,
        **fields: Any,
    ) -> Job:
        """Move a job to `to` if the transition table allows it from where it is now."""
        unknown = set(fields) - SETTABLE
        if unknown:
            raise StoreError(f"not settable by a transition: {sorted(unknown)}")
        sql = update_status(to, fields)
        params = {
            "to": int(to),
            "job_id": job_id,
            **{k: _column_value(v) for k, v in fields.items()},
        }
        row = await self._fetch_one(sql, params)
        if row is None:
            current = await self.get(job_id)
            raise TransitionRefusedError(
                f"job {job_id} is at {int(current.status)}: cannot move to {int(to)}"
            )
        return self._written(row)

    async def admit(self, admission: Admission) -> list[Job]:
        """Admit the waiting jobs `admission` picks, with their allocations, in one
        transaction: what the running jobs hold is read in the one that adds to it."""
        async with self.transaction() as tx:
            active = await tx.active_claims()
            waiting = await tx.waiting_claims(admission.full_environments(active))
            if not waiting:
                return []
            chosen = admission.plan(active, waiting)
            rows = [await tx.admit(job_id, a) for job_id, a in chosen]
        return [self._written(row) for row in rows if row is not None]

    async def slots_in_use(self) -> dict[str, int]:
        if self._slots is not None:
            return dict(self._slots)
        writes = self._writes
        counted = {str(r[0]): int(r[1]) for r in await self._fetch_all(SQL_COUNT_SLOTS)}
        if writes == self._writes:  # no status changed while counting: keep it
            self._slots = counted
        return counted

    async def count_jobs(self) -> list[tuple[str, int, int]]:
        """(environment, status, how many) for every pair that has jobs."""
        rows = await self._fetch_all(SQL_COUNT_JOBS)
        return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]

    async def count_waiting(self) -> dict[str, int]:
        """Jobs waiting for a slot, per environment that has any."""
        return {str(r[0]): int(r[1]) for r in await self._fetch_all(SQL_COUNT_WAITING)}

    async def count_by_consumer(self) -> list[tuple[str, int, int]]:
        """(owner in lower case, jobs waiting, jobs holding a slot) for every consumer
        with unfinished jobs."""
        rows = await self._fetch_all(SQL_COUNT_BY_CONSUMER)
        return [(str(r[0]), int(r[1] or 0), int(r[2] or 0)) for r in rows]

    async def recent_use(self, since: float) -> list[PastUse]:
        """Jobs that held the pool and ended at `since` or later: (owner, what they held,
        from when, until when)."""
        rows = await self._fetch_all(SQL_RECENT_USE, (since,))
        return [(str(r[0]), Allocation.model_validate_json(r[1]), r[2], float(r[3])) for r in rows]

    async def pending_deletes(self) -> list[Job]:
        """Finished jobs whose delete was recorded but whose files are not removed yet."""
        return [Job.from_row(r) for r in await self._fetch_all(SQL_PENDING_DELETES)]

    async def active_jobs(self) -> list[Job]:
        """Jobs that hold a slot (10 to 60), oldest first."""
        return [Job.from_row(r) for r in await self._fetch_all(SQL_ACTIVE_JOBS)]

    async def expire_waiting(self, job_id: str) -> Job | None:
        """Mark a waiting job as past its queue deadline (stopreq 2), so that no admission
        takes it; None if it is no longer waiting or has a stop already."""
        row = await self._fetch_one(SQL_EXPIRE_WAITING, (job_id,))
        return None if row is None else self._seen(row)

    async def request_stop(self, job_id: str, reason: StopRequest) -> Job | None:
        """Transaction.request_stop in a transaction of its own."""
        async with self.transaction() as tx:
            return await tx.request_stop(job_id, reason)

    async def set_results(self, job_id: str, results: list[ResultFile]) -> Job:
        payload = json.dumps([r.model_dump() for r in results])
        row = await self._fetch_one(SQL_SET_RESULTS, (payload, job_id))
        if row is None:
            raise JobNotFoundError(f"no job {job_id}")
        return self._seen(row)

    async def mark_removed(self, job_id: str) -> Job:
        row = await self._fetch_one(SQL_MARK_REMOVED, (job_id,))
        if row is None:
            current = await self.get(job_id)
            raise TransitionRefusedError(
                f"job {job_id} is at {int(current.status)}: only a finished job can be removed"
            )
        return self._seen(row)

    # -- events ---------------------------------------------------------------

    def on_events(self, listener: Callable[[], None]) -> None:
        """Call `listener` after each write that may have added events (it reads them)."""
        self._listeners.append(listener)

    async def events_after(
        self, after: int, *, owner: str | None = None, limit: int = 500
    ) -> list[JobEvent]:
        """The status changes after event `after`, oldest first; `owner`'s only if given."""
        if owner is None:
            rows = await self._fetch_all(SQL_EVENTS_AFTER, (after, limit))
        else:
            rows = await self._fetch_all(SQL_OWNER_EVENTS_AFTER, (owner, after, limit))
        return [event_of(r) for r in rows]

    async def event_range(self) -> tuple[int, int]:
        """The first and last event ids kept; (0, 0) while there are none."""
        row = await self._fetch_one(SQL_EVENT_RANGE, ())
        return (int(row[0] or 0), int(row[1] or 0))

    async def prune_events(self, through: int) -> None:
        """Forget the events up to id `through` (a stream asking for them is told so)."""
        async with self.transaction() as tx:
            await tx._sql(SQL_PRUNE_EVENTS, (through,))

    # -- nonces -------------------------------------------------------------

    async def get_nonce(self, address: str) -> Decimal | None:
        """The last nonce accepted from `address` (compared case-blind), None if none."""
        row = await self._fetch_one(SQL_GET_NONCE, (address.lower(),))
        return None if row is None else Decimal(row[0])

    async def token_revoked(self, token_id: str) -> bool:
        """Whether the auth token `token_id` was invalidated."""
        return await self._fetch_one(SQL_TOKEN_REVOKED, (token_id,)) is not None


def _column_value(value: Any) -> Any:
    """A transition's field as its column holds it: a reason as its text, a model as JSON."""
    if isinstance(value, TerminationReason):
        return str(value)
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return value
