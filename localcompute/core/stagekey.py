"""Tokens that let one stage of one job reach this server, where the nodes that run jobs
share no disk with it (Swarm): the fetch downloads the job's spec and local files, the
filter uploads the results.

A token is an HMAC of the job and the stage under a key kept in the data folder, so it
outlives a restart of the server (a filter that runs on while the server restarts still
uploads) and is worth nothing for another job or the other stage.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_FILE = "stage.key"


class StageKey:
    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def load(cls, data_dir: Path) -> StageKey:
        """The data folder's key, made on first use (readable by this server only)."""
        path = data_dir / KEY_FILE
        try:
            return cls(path.read_bytes())
        except FileNotFoundError:
            key = secrets.token_bytes(32)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key)
            return cls(key)

    def token(self, job_id: str, stage: str) -> str:
        return hmac.new(self._key, f"{job_id}/{stage}".encode(), hashlib.sha256).hexdigest()

    def allows(self, job_id: str, stage: str, token: str) -> bool:
        return hmac.compare_digest(self.token(job_id, stage), token)
