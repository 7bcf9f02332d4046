"""A transaction of the job store as an object: its methods are the only writes inside it.

Preconditions are declared (a nonce to consume, an agreement that must be unused)
and checked here, in the same transaction as the action they guard.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import aiosqlite

from localcompute.core import nonces
from localcompute.core.errors import AgreementInUseError, StoreError, TokenError
from localcompute.core.jobspec import JobSpec
from localcompute.core.models import (
    AdmissionView,
    Allocation,
    ConsumerCounts,
    Job,
    Preconditions,
)
from localcompute.core.status import JobStatus, StopRequest
from localcompute.store.queries import (
    SQL_ACTIVE_CLAIMS,
    SQL_ADMIT,
    SQL_AGREEMENT_IN_USE,
    SQL_CONSUMER_COUNTS,
    SQL_FORGET_EXPIRED_TOKENS,
    SQL_GET_NONCE,
    SQL_INSERT_JOB,
    SQL_REQUEST_DELETE,
    SQL_REQUEST_STOP,
    SQL_REVOKE_TOKEN,
    SQL_SET_NONCE,
    SQL_TOKEN_REVOKED,
    waiting_claims,
)

# Waiting jobs one admission looks at, per consumer and in all; the rest wait for the next.
CONSUMER_WINDOW = 100
ADMISSION_WINDOW = 5000


class Transaction:
    """The writes of one BEGIN IMMEDIATE … COMMIT; its methods are the only way to write in it.

    Preconditions are checked here, in the same transaction as the action they
    guard, so a refused check leaves nothing behind.
    """

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self.touched: set[str] = set()  # jobs this transaction wrote: stale in any cache

    async def _sql(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        return await rows_of(self._db, sql, params)

    async def check(self, preconditions: Preconditions) -> None:
        if preconditions.nonce_address is not None and preconditions.nonce is not None:
            await self.consume_nonce(preconditions.nonce_address, preconditions.nonce)
        if preconditions.unused_agreement is not None and await self._sql(
            SQL_AGREEMENT_IN_USE, (preconditions.unused_agreement,)
        ):
            raise AgreementInUseError()
        if preconditions.valid_token is not None and await self._sql(
            SQL_TOKEN_REVOKED, (preconditions.valid_token,)
        ):
            raise TokenError("Invalid token: it was invalidated")

    async def consumer_counts(self, owner: str, since: float) -> dict[str, ConsumerCounts]:
        """Per environment: `owner`'s jobs waiting, holding a slot, accepted since `since`."""
        rows = await self._sql(SQL_CONSUMER_COUNTS, {"owner": owner, "since": since})
        return {
            str(r[0]): ConsumerCounts(
                waiting=int(r[1] or 0),
                running=int(r[2] or 0),
                started=int(r[3] or 0),
                first_started=r[4],
            )
            for r in rows
        }

    async def revoke_token(self, token_id: str, expires_at: float | None) -> None:
        """Invalidate an auth token for good; rows of tokens past their end go."""
        await self._sql(SQL_FORGET_EXPIRED_TOKENS, (time.time(),))
        await self._sql(SQL_REVOKE_TOKEN, (token_id, expires_at))

    async def consume_nonce(self, address: str, nonce: Decimal) -> None:
        """Accept `nonce` only if above the last one accepted from `address` (case-blind)."""
        rows = await self._sql(SQL_GET_NONCE, (address.lower(),))
        last = Decimal(rows[0][0]) if rows else Decimal(0)
        nonces.refuse_stale(last, nonce)
        await self._sql(SQL_SET_NONCE, (address.lower(), str(nonce)))

    async def insert_job(self, spec: JobSpec, *, max_duration: float) -> str:
        """Store a new waiting job and return its id."""
        job_id = uuid.uuid4().hex
        params = {
            "job_id": job_id,
            "environment": spec.environment,
            "owner": spec.owner,
            "agreement_id": spec.agreement_id,
            "status": int(JobStatus.WARMING_UP),
            "date_created": time.time(),
            "max_duration": max_duration,
            "secret": uuid.uuid4().hex,
            "spec": spec.model_dump_json(),
        }
        await self._sql(SQL_INSERT_JOB, params)
        self.touched.add(job_id)
        return job_id

    async def request_stop(self, job_id: str, reason: StopRequest) -> Job | None:
        """Record a stop or time-limit request on an unfinished job; None if it had one."""
        self.touched.add(job_id)
        rows = await self._sql(SQL_REQUEST_STOP, {"stopreq": int(reason), "job_id": job_id})
        return Job.from_row(rows[0]) if rows else None

    async def active_claims(self) -> list[AdmissionView]:
        return [AdmissionView.from_row(r) for r in await self._sql(SQL_ACTIVE_CLAIMS)]

    async def waiting_claims(self, excluded: set[str]) -> list[AdmissionView]:
        """The oldest waiting jobs of every environment but the `excluded` ones."""
        envs = sorted(excluded)
        rows = await self._sql(
            waiting_claims(len(envs)),
            (int(JobStatus.WARMING_UP), *envs, CONSUMER_WINDOW, ADMISSION_WINDOW),
        )
        return [AdmissionView.from_row(r) for r in rows]

    async def admit(self, job_id: str, allocation: Allocation) -> Any:
        """Move a waiting job to 10 with what the pool gave it; the row, or None."""
        self.touched.add(job_id)
        rows = await self._sql(
            SQL_ADMIT,
            {
                "started": int(JobStatus.JOB_STARTED),
                "waiting": int(JobStatus.WARMING_UP),
                "job_id": job_id,
                "allocation": allocation.model_dump_json(),
            },
        )
        return rows[0] if rows else None

    async def request_delete(self, job_id: str) -> None:
        """Record that the job's containers, folder and results are to be removed."""
        self.touched.add(job_id)
        await self._sql(SQL_REQUEST_DELETE, (job_id,))


async def rows_of(
    db: aiosqlite.Connection, sql: str, params: Sequence[Any] | dict[str, Any] = ()
) -> list[Any]:
    """Every row of one statement; fetchall steps it to its end, so an UPDATE … RETURNING
    is done. A driver error becomes the store's own."""
    try:
        cursor = await db.execute(sql, params)
        rows = list(await cursor.fetchall())
        await cursor.close()
    except sqlite3.Error as e:
        raise StoreError(f"the job store failed: {e}") from e
    return rows
