"""Reading a server's jobs straight from its SQLite file, read-only: for an operator on
the host (`localcompute jobs --data-dir`), while the server runs or not."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from localcompute.core.errors import StoreError
from localcompute.core.models import Job, JobQuery
from localcompute.store.queries import select_jobs

DB_FILE = "localcompute.sqlite"


def read_jobs(data_dir: Path, query: JobQuery) -> list[Job]:
    """The jobs `query` selects in the server's data folder, oldest first; writes nothing."""
    path = data_dir / DB_FILE
    if not path.is_file():
        raise StoreError(f"{data_dir} holds no localcompute data ({DB_FILE} is missing)")
    sql, params = select_jobs(query)
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(sql, params).fetchall()
    except sqlite3.Error as e:
        raise StoreError(f"cannot read {path}: {e}") from e
    return [job for job in map(Job.from_row, rows) if query.matches(job)]
