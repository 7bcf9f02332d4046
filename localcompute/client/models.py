"""What the client hands back: a job as the provider API describes it, typed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from localcompute.core.errors import JobRemovedError, NoLogError
from localcompute.core.models import ResultType
from localcompute.core.status import FINAL_STATUSES, JobStatus

RUNNING_ALGORITHM = int(JobStatus.RUNNING_ALGORITHM)  # the same number in both dialects
ALGORITHM_LOG = ResultType.ALGORITHM_LOG


class RemoteResult(BaseModel):
    """One result of a job, as the server lists it: `index` is what a download names
    (its position, unless the server says otherwise), `url` where the server says it is
    fetched from (signed; empty where it says nothing)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    filename: str
    filesize: int
    type: str
    index: int
    url: str = ""


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
    stop_requested: int = Field(0, alias="stopreq")
    removed: int = 0
    raw: dict[str, Any] = Field(default_factory=dict, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _indexed_results(cls, data: Any) -> Any:
        """Each result with its index and URL: the provider lists the URLs apart, in
        `resultsUrls`, and leaves the index to the position; Ocean Node says both."""
        if not isinstance(data, dict) or not isinstance(data.get("results"), list):
            return data
        urls = data.get("resultsUrls") or []
        results = [
            {"index": i, "url": urls[i] if i < len(urls) else "", **r} if isinstance(r, dict) else r
            for i, r in enumerate(data["results"])
        ]
        return {**data, "results": results}

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

    def check_not_removed(self) -> None:
        """JobRemovedError if the job's files are gone."""
        if self.removed:
            raise JobRemovedError(
                f"job {self.job_id} was removed (deleted, or its results expired): "
                "its results and logs are gone"
            )

    def published_log(self) -> RemoteResult:
        """The algorithm's log among the results of a job that has ended; else the error
        that says why there is none."""
        self.check_not_removed()
        log = next((r for r in self.results if r.type == ALGORITHM_LOG), None)
        if log is None:
            ran = "its algorithm never ran" if self.exit_code is None else "none was published"
            raise NoLogError(f"job {self.job_id} has no log: {ran} ({self.reason})")
        return log

    @property
    def reason(self) -> str:
        """Why it ended, in one line: the detail when there is one, else the status text."""
        return self.termination_detail or self.status_text

    def result(self, name_or_index: str | int) -> RemoteResult:
        """A result, by its index or its file name."""
        for result in self.results:
            if name_or_index in (result.index, result.filename):
                return result
        if isinstance(name_or_index, int):
            raise KeyError(f"job {self.job_id} has no result {name_or_index}")
        raise KeyError(f"job {self.job_id} has no result named {name_or_index!r}")

    def result_index(self, name_or_index: str | int) -> int:
        """A result's index, from its index or its file name."""
        return self.result(name_or_index).index
