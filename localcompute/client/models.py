"""What the client hands back: a job as the provider API describes it, typed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

FINAL_STATUSES = frozenset({31, 32, 70})


class RemoteResult(BaseModel):
    """One result of a job; its position in `RemoteJob.results` is its index."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    filename: str
    filesize: int
    type: str


class RemoteJob(BaseModel):
    """A job's status object from /api/services/compute (ocean.py's and ocean.js's shape)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    job_id: str = Field(alias="jobId")
    owner: str = ""
    environment: str = ""
    status: int
    status_text: str = Field("", alias="statusText")
    date_created: str | None = Field(None, alias="dateCreated")
    date_finished: str | None = Field(None, alias="dateFinished")
    results: list[RemoteResult] = Field(default_factory=list)
    exit_code: int | None = Field(None, alias="exitCode")
    termination_reason: str | None = Field(None, alias="terminationReason")
    termination_detail: str | None = Field(None, alias="terminationDetail")
    input_dids: list[str] = Field(default_factory=list, alias="inputDID")
    removed: int = 0
    raw: dict[str, Any] = Field(default_factory=dict, exclude=True)

    @classmethod
    def parse(cls, data: dict[str, Any]) -> RemoteJob:
        return cls.model_validate({**data, "raw": data})

    @classmethod
    def from_node(cls, data: dict[str, Any]) -> RemoteJob:
        """A job of Ocean Node's dialect (ocean.js 8's NodeComputeJob), in the same terms:
        its system-failure states (41, 61) read as a final 70 that ended in "error"."""
        details = data.get("terminationDetails") or {}
        status = int(data["status"])
        system_failed = bool(data.get("dateFinished")) and status not in FINAL_STATUSES
        failed = system_failed or status in (31, 32)
        return cls.model_validate(
            {
                **data,
                "status": 70 if system_failed else status,
                "exitCode": details.get("exitCode"),
                "terminationReason": "error" if system_failed else details.get("reason"),
                "terminationDetail": details.get("detail") if failed else None,
                "inputDID": data.get("inputDID") or [],
                "raw": data,
            }
        )

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def reason(self) -> str:
        """Why it ended, in one line: the detail when there is one, else the status text."""
        return self.termination_detail or self.status_text

    def result_index(self, name_or_index: str | int) -> int:
        """A result's index, from its index or its file name."""
        if isinstance(name_or_index, int):
            if not 0 <= name_or_index < len(self.results):
                raise KeyError(f"job {self.job_id} has no result {name_or_index}")
            return name_or_index
        for index, result in enumerate(self.results):
            if result.filename == name_or_index:
                return index
        raise KeyError(f"job {self.job_id} has no result named {name_or_index!r}")
