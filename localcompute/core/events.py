"""A job's status change as the event streams send it: written by the store with the
change itself (an SQLite trigger), so every change has one, in order, surviving restarts."""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any

from localcompute.core.jobspec import Frozen
from localcompute.core.status import JobStatus, TerminationReason, status_text


class JobEvent(Frozen):
    id: int  # increasing, never reused: a stream's Last-Event-ID
    job_id: str
    owner: str
    environment: str
    status: JobStatus
    termination_reason: TerminationReason | None = None
    exit_code: int | None = None
    detail: str = ""
    at: float  # when the change was written (Unix time)

    @property
    def is_final(self) -> bool:
        return self.status.is_final

    @property
    def status_text(self) -> str:
        return status_text(self.status, self.termination_reason, self.detail)

    @cached_property
    def view_json(self) -> str:
        """`view()` as compact JSON, made once: every stream sends the same event."""
        return json.dumps(self.view(), separators=(",", ":"))

    def view(self) -> dict[str, Any]:
        """The event's JSON, the same in every stream."""
        return {
            "id": self.id,
            "jobId": self.job_id,
            "owner": self.owner,
            "environment": self.environment,
            "status": int(self.status),
            "statusText": self.status_text,
            "terminationReason": self.termination_reason,
            "exitCode": self.exit_code,
            "at": self.at,
        }
