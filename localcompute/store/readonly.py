"""Reading a server's jobs straight from its SQLite file, read-only: for an operator on
the host (`localcompute jobs --data-dir`), while the server runs or not."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from localcompute.core.errors import StoreError
from localcompute.core.models import Job, JobQuery
from localcompute.store.queries import SQL_GET_META, select_jobs

DB_FILE = "localcompute.sqlite"


def db_path(data_dir: Path) -> Path:
    """Where a server's store is in its data folder: the one place that names the file."""
    return data_dir / DB_FILE


def read_jobs(data_dir: Path, query: JobQuery) -> list[Job]:
    """The jobs `query` selects in the server's data folder, oldest first; writes nothing."""
    sql, params = select_jobs(query)
    rows = _read(data_dir, sql, params)
    return [job for job in map(Job.from_row, rows) if query.matches(job)]


def read_instance(data_dir: Path) -> str:
    """The id a server labels its containers with (localcompute.instance)."""
    rows = _read(data_dir, SQL_GET_META, ("instance_id",))
    if not rows:
        raise StoreError(f"{db_path(data_dir)} names no instance yet")
    return str(rows[0][0])


def _read(data_dir: Path, sql: str, params: Sequence[object]) -> list[sqlite3.Row]:
    path = db_path(data_dir)
    if not path.is_file():
        raise StoreError(f"{data_dir} holds no localcompute data ({DB_FILE} is missing)")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            db.row_factory = sqlite3.Row
            return list(db.execute(sql, params).fetchall())
    except sqlite3.Error as e:
        raise StoreError(f"cannot read {path}: {e}") from e
