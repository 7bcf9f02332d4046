"""Every SQL statement of localcompute, and the schema's migrations.

Status lists inside statements come from the status enum, so the SQL cannot
drift from Ocean's numbers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

from localcompute.core.events import JobEvent
from localcompute.core.models import JobQuery
from localcompute.core.status import (
    FINAL_STATUSES,
    SLOT_STATUSES,
    JobStatus,
    StopRequest,
    predecessors,
)

# Unix time with milliseconds, in SQL (unixepoch('subsec') needs SQLite 3.42).
_NOW = "(julianday('now') - 2440587.5) * 86400.0"

# Each entry moves the schema one version up; PRAGMA user_version says where a file is.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL UNIQUE,
        environment TEXT NOT NULL,
        owner TEXT NOT NULL,
        agreement_id TEXT NOT NULL,
        status INTEGER NOT NULL,
        status_text TEXT NOT NULL,
        stopreq INTEGER NOT NULL DEFAULT 0,
        removed INTEGER NOT NULL DEFAULT 0,
        exit_code INTEGER,
        termination_reason TEXT,
        detail TEXT NOT NULL DEFAULT '',
        date_created REAL NOT NULL,
        date_finished REAL,
        deadline REAL,
        max_duration REAL NOT NULL,
        secret TEXT NOT NULL,
        spec TEXT NOT NULL,
        results TEXT NOT NULL DEFAULT '[]',
        fetch_started_at REAL,
        fetch_finished_at REAL,
        algorithm_started_at REAL,
        algorithm_finished_at REAL,
        filter_started_at REAL,
        filter_finished_at REAL,
        publish_started_at REAL,
        publish_finished_at REAL
    );
    CREATE INDEX jobs_env_status ON jobs (environment, status, seq);
    CREATE INDEX jobs_owner ON jobs (owner COLLATE NOCASE);
    CREATE INDEX jobs_agreement ON jobs (agreement_id);
    CREATE TABLE nonces (address TEXT PRIMARY KEY, nonce TEXT NOT NULL);
    """,
    # A delete is recorded and answered at once; the job's own task removes what it
    # leaves behind when it ends (or the next start does, after a crash).
    """
    ALTER TABLE jobs ADD COLUMN delete_requested INTEGER NOT NULL DEFAULT 0;
    """,
    # statusText and the deadline are derived (from status, reason and detail; from the
    # algorithm's start and max_duration), not stored beside what they derive from. A
    # rebuild rather than DROP COLUMN, which SQLite before 3.35 lacks.
    """
    CREATE TABLE jobs_v3 (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL UNIQUE,
        environment TEXT NOT NULL,
        owner TEXT NOT NULL,
        agreement_id TEXT NOT NULL,
        status INTEGER NOT NULL,
        stopreq INTEGER NOT NULL DEFAULT 0,
        removed INTEGER NOT NULL DEFAULT 0,
        exit_code INTEGER,
        termination_reason TEXT,
        detail TEXT NOT NULL DEFAULT '',
        date_created REAL NOT NULL,
        date_finished REAL,
        max_duration REAL NOT NULL,
        secret TEXT NOT NULL,
        spec TEXT NOT NULL,
        results TEXT NOT NULL DEFAULT '[]',
        fetch_started_at REAL,
        fetch_finished_at REAL,
        algorithm_started_at REAL,
        algorithm_finished_at REAL,
        filter_started_at REAL,
        filter_finished_at REAL,
        publish_started_at REAL,
        publish_finished_at REAL,
        delete_requested INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO jobs_v3 (
        seq, job_id, environment, owner, agreement_id, status, stopreq, removed,
        exit_code, termination_reason, detail, date_created, date_finished,
        max_duration, secret, spec, results, fetch_started_at,
        fetch_finished_at, algorithm_started_at, algorithm_finished_at,
        filter_started_at, filter_finished_at, publish_started_at,
        publish_finished_at, delete_requested
    )
    SELECT
        seq, job_id, environment, owner, agreement_id, status, stopreq, removed,
        exit_code, termination_reason, detail, date_created, date_finished,
        max_duration, secret, spec, results, fetch_started_at,
        fetch_finished_at, algorithm_started_at, algorithm_finished_at,
        filter_started_at, filter_finished_at, publish_started_at,
        publish_finished_at, delete_requested
    FROM jobs;
    DROP TABLE jobs;
    ALTER TABLE jobs_v3 RENAME TO jobs;
    CREATE INDEX jobs_env_status ON jobs (environment, status, seq);
    CREATE INDEX jobs_owner ON jobs (owner COLLATE NOCASE);
    CREATE INDEX jobs_agreement ON jobs (agreement_id);
    """,
    # Auth tokens (the node dialect) are signed, not stored; only an invalidation is,
    # until the token would have expired anyway (NULL: it never would).
    """
    CREATE TABLE revoked_tokens (token_id TEXT PRIMARY KEY, expires_at REAL);
    """,
    # What is polled and counted by status (unfinished jobs, slots in use) is searched
    # through an index, not scanned, however many finished jobs the store holds.
    """
    CREATE INDEX jobs_status_env ON jobs (status, environment);
    """,
    # What the host pool gave a job at admission (cores, RAM, disk, GPUs), as JSON: the
    # pool after a restart is the sum of what the running jobs hold.
    """
    ALTER TABLE jobs ADD COLUMN allocation TEXT;
    """,
    # The image the algorithm's container ran, by content (JSON), written with its end:
    # the container goes after, and the job's receipt names the image.
    """
    ALTER TABLE jobs ADD COLUMN algorithm_image TEXT;
    """,
    # Every status change as an event, written by the statement that makes it (triggers:
    # no code path can change a status without its event), for the event streams.
    f"""
    CREATE TABLE job_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL,
        owner TEXT NOT NULL,
        environment TEXT NOT NULL,
        status INTEGER NOT NULL,
        termination_reason TEXT,
        exit_code INTEGER,
        detail TEXT NOT NULL DEFAULT '',
        at REAL NOT NULL
    );
    CREATE INDEX job_events_owner ON job_events (owner COLLATE NOCASE, id);
    CREATE TRIGGER job_events_inserted AFTER INSERT ON jobs BEGIN
        INSERT INTO job_events (job_id, owner, environment, status, at)
        VALUES (NEW.job_id, NEW.owner, NEW.environment, NEW.status, {_NOW});
    END;
    CREATE TRIGGER job_events_moved AFTER UPDATE OF status ON jobs
    WHEN NEW.status != OLD.status BEGIN
        INSERT INTO job_events
            (job_id, owner, environment, status, termination_reason, exit_code, detail, at)
        VALUES (NEW.job_id, NEW.owner, NEW.environment, NEW.status,
                NEW.termination_reason, NEW.exit_code, NEW.detail, {_NOW});
    END;
    """,
)

# Columns a transition may set besides the status.
SETTABLE = frozenset(
    {
        "exit_code",
        "termination_reason",
        "detail",
        "date_finished",
        "fetch_started_at",
        "fetch_finished_at",
        "algorithm_started_at",
        "algorithm_finished_at",
        "filter_started_at",
        "filter_finished_at",
        "publish_started_at",
        "publish_finished_at",
        "algorithm_image",
    }
)


def statements(script: str) -> Iterator[str]:
    """A migration's statements, one by one: a trigger's body has semicolons of its own."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if pending.strip():
        yield pending.strip()


def in_list(values: Iterable[int]) -> str:
    return ",".join(str(int(v)) for v in sorted(values))


SLOT_LIST = in_list(SLOT_STATUSES)
FINAL_LIST = in_list(FINAL_STATUSES)
UNFINISHED_LIST = in_list(s for s in JobStatus if s not in FINAL_STATUSES)

SQL_INSERT_JOB = """
INSERT INTO jobs (job_id, environment, owner, agreement_id, status,
                  date_created, max_duration, secret, spec)
VALUES (:job_id, :environment, :owner, :agreement_id, :status,
        :date_created, :max_duration, :secret, :spec)
"""
SQL_GET_JOB = "SELECT * FROM jobs WHERE job_id = ?"
# Admission reads the running and the waiting jobs and moves the chosen ones to 10 with
# their allocation, all in one transaction; `status = :waiting` guards each move.
CLAIM_COLUMNS = (
    "job_id, environment, json_extract(spec, '$.resources') AS resources, allocation, "
    "lower(owner) AS owner, date_created, fetch_started_at"
)


def waiting_claims(excluded: int) -> str:
    """Waiting jobs, oldest first, but those of `excluded` environments: each consumer's
    oldest ones only, so that one consumer's long queue never hides another's job from
    admission (parameters: the status, the environments, the window per consumer, the
    window in all)."""
    skip = f" AND environment NOT IN ({','.join('?' * excluded)})" if excluded else ""
    return (
        f"SELECT * FROM (SELECT {CLAIM_COLUMNS}, seq, ROW_NUMBER() OVER "
        f"(PARTITION BY lower(owner) ORDER BY seq) AS turn FROM jobs "
        f"WHERE status = ? AND stopreq = 0{skip}) "
        "WHERE turn <= ? ORDER BY seq LIMIT ?"
    )


# Per environment, one consumer's jobs waiting, holding a slot, and accepted since a time
# (how many, the oldest): what its job limits are checked against.
SQL_CONSUMER_COUNTS = f"""
SELECT environment,
       SUM(status = {int(JobStatus.WARMING_UP)}),
       SUM(status IN ({SLOT_LIST})),
       SUM(date_created >= :since),
       MIN(CASE WHEN date_created >= :since THEN date_created END)
FROM jobs
WHERE owner = :owner COLLATE NOCASE AND (status IN ({UNFINISHED_LIST}) OR date_created >= :since)
GROUP BY environment
"""
# Waiting and running jobs per consumer, for /metrics.
SQL_COUNT_BY_CONSUMER = f"""
SELECT lower(owner), SUM(status = {int(JobStatus.WARMING_UP)}), SUM(status IN ({SLOT_LIST}))
FROM jobs WHERE status IN ({UNFINISHED_LIST}) GROUP BY lower(owner)
"""
# Jobs that held the pool and ended since a time: what fair turns remember at start-up.
SQL_RECENT_USE = f"""
SELECT lower(owner), allocation, fetch_started_at, date_finished FROM jobs
WHERE status IN ({FINAL_LIST}) AND date_finished >= ? AND allocation IS NOT NULL
"""


SQL_ADMIT = """
UPDATE jobs SET status = :started, allocation = :allocation
WHERE job_id = :job_id AND status = :waiting AND stopreq = 0
RETURNING *
"""
# A waiting job at its queue deadline: marked so that no admission takes it (a waiting
# job with a stop recorded is never admitted), unless one has already.
SQL_EXPIRE_WAITING = f"""
UPDATE jobs SET stopreq = {int(StopRequest.TIME_LIMIT)}
WHERE job_id = ? AND status = {int(JobStatus.WARMING_UP)} AND stopreq = 0
RETURNING *
"""
SQL_COUNT_SLOTS = (
    f"SELECT environment, COUNT(*) FROM jobs WHERE status IN ({SLOT_LIST}) GROUP BY environment"
)
# Through jobs_status_env: the waiting jobs only, however many finished ones the store holds.
SQL_COUNT_WAITING = (
    f"SELECT environment, COUNT(*) FROM jobs WHERE status = {int(JobStatus.WARMING_UP)} "
    "GROUP BY environment"
)
SQL_COUNT_JOBS = "SELECT environment, status, COUNT(*) FROM jobs GROUP BY environment, status"
SQL_ACTIVE_JOBS = f"SELECT * FROM jobs WHERE status IN ({SLOT_LIST}) ORDER BY seq"
SQL_ACTIVE_CLAIMS = f"SELECT {CLAIM_COLUMNS} FROM jobs WHERE status IN ({SLOT_LIST}) ORDER BY seq"
SQL_REQUEST_STOP = f"""
UPDATE jobs SET stopreq = :stopreq
WHERE job_id = :job_id AND status NOT IN ({FINAL_LIST}) AND stopreq = 0
RETURNING *
"""
SQL_REQUEST_DELETE = "UPDATE jobs SET delete_requested = 1 WHERE job_id = ? AND removed = 0"
SQL_PENDING_DELETES = (
    f"SELECT * FROM jobs WHERE delete_requested = 1 AND removed = 0 AND status IN ({FINAL_LIST})"
)
SQL_SET_RESULTS = "UPDATE jobs SET results = ? WHERE job_id = ? RETURNING *"
SQL_MARK_REMOVED = f"""
UPDATE jobs SET removed = 1, results = '[]'
WHERE job_id = ? AND status IN ({FINAL_LIST}) RETURNING *
"""
SQL_AGREEMENT_IN_USE = (
    f"SELECT 1 FROM jobs WHERE agreement_id = ? AND status NOT IN ({FINAL_LIST}) LIMIT 1"
)
SQL_GET_META = "SELECT value FROM meta WHERE key = ?"
SQL_SET_META = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING"
SQL_TOKEN_REVOKED = "SELECT 1 FROM revoked_tokens WHERE token_id = ?"
SQL_REVOKE_TOKEN = """
INSERT INTO revoked_tokens (token_id, expires_at) VALUES (?, ?)
ON CONFLICT(token_id) DO NOTHING
"""
SQL_FORGET_EXPIRED_TOKENS = "DELETE FROM revoked_tokens WHERE expires_at < ?"
EVENT_COLUMNS = "id, job_id, owner, environment, status, termination_reason, exit_code, detail, at"
SQL_EVENTS_AFTER = f"SELECT {EVENT_COLUMNS} FROM job_events WHERE id > ? ORDER BY id LIMIT ?"
SQL_OWNER_EVENTS_AFTER = (
    f"SELECT {EVENT_COLUMNS} FROM job_events WHERE owner = ? COLLATE NOCASE AND id > ? "
    "ORDER BY id LIMIT ?"
)
SQL_EVENT_RANGE = "SELECT MIN(id), MAX(id) FROM job_events"
SQL_PRUNE_EVENTS = "DELETE FROM job_events WHERE id <= ?"
SQL_GET_NONCE = "SELECT nonce FROM nonces WHERE address = ?"
SQL_SET_NONCE = """
INSERT INTO nonces (address, nonce) VALUES (?, ?)
ON CONFLICT(address) DO UPDATE SET nonce = excluded.nonce
"""


def event_of(row: Any) -> JobEvent:
    """A row of job_events (EVENT_COLUMNS) as the event."""
    return JobEvent.model_validate(
        {
            "id": row[0],
            "job_id": row[1],
            "owner": row[2],
            "environment": row[3],
            "status": row[4],
            "termination_reason": row[5] or None,
            "exit_code": row[6],
            "detail": row[7] or "",
            "at": row[8],
        }
    )


def select_jobs(query: JobQuery) -> tuple[str, list[Any]]:
    """The SELECT for `query`, in its order. The input DID is matched on the rows read (so
    a query with both an input DID and a limit may find fewer than the limit)."""
    clauses: list[str] = []
    params: list[Any] = []
    for value, test in (
        (query.job_id, "job_id = ?"),
        (query.owner, "owner = ? COLLATE NOCASE"),
        (query.agreement_id, "agreement_id = ?"),
        (query.environment, "environment = ?"),
    ):
        if value is not None:
            clauses.append(test)
            params.append(value)
    if query.unfinished:
        clauses.append(f"status IN ({UNFINISHED_LIST})")
    if query.finished:
        clauses.append(f"status IN ({FINAL_LIST})")
    if query.finished_before is not None:
        clauses.append("date_finished <= ?")
        params.append(query.finished_before)
    if not query.include_removed:
        clauses.append("removed = 0")
    if query.status is not None:
        clauses.append("status = ?")
        params.append(int(query.status))
    if query.job_id_prefix is not None:
        clauses.append("substr(job_id, 1, ?) = ?")
        params += [len(query.job_id_prefix), query.job_id_prefix]
    where = " AND ".join(clauses) or "1"
    order = "seq DESC" if query.newest_first else "seq"
    limit = "" if query.limit is None else f" LIMIT {int(query.limit)}"
    return f"SELECT * FROM jobs WHERE {where} ORDER BY {order}{limit}", params


def update_status(to: JobStatus, columns: Iterable[str]) -> str:
    """Compare-and-set: move a job to `to` only from a status the transition table allows."""
    sets = ["status = :to", *(f"{c} = :{c}" for c in columns)]
    return (
        f"UPDATE jobs SET {', '.join(sets)} WHERE job_id = :job_id "
        f"AND status IN ({in_list(predecessors(to))}) RETURNING *"
    )
