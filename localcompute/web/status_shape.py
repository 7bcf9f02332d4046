"""The shape of a job's status object, as each dialect answers it: typed dicts the views
build (no cost on the hot path of status polls) and the OpenAPI document's schemas are
made from (pydantic reads them), so the document cannot drift from the answers."""

from __future__ import annotations

from typing import (
    Annotated,
    Any,
    Literal,
    NotRequired,  # pydantic reads it before 3.12
)

from pydantic import Field
from typing_extensions import TypedDict

from localcompute.core.models import ResultType
from localcompute.core.status import JobStatus, StopRequest, TerminationReason


class ResultEntry(TypedDict):
    filename: str
    filesize: Annotated[int, Field(ge=0)]
    type: ResultType


class StatusObject(TypedDict):
    """What every dialect's status object holds (Ocean's fields, plus terminationDetail)."""

    jobId: str
    owner: str
    agreementId: NotRequired[str]
    environment: NotRequired[str]
    dateCreated: Annotated[str | None, Field(description="epoch seconds")]
    dateFinished: NotRequired[str | None]
    status: JobStatus
    statusText: str
    results: list[ResultEntry]
    resultsDid: NotRequired[str]
    stopreq: NotRequired[StopRequest]
    removed: NotRequired[Literal[0, 1]]
    algoDID: NotRequired[str]
    inputDID: NotRequired[list[str]]
    exitCode: NotRequired[int | None]
    terminationReason: NotRequired[TerminationReason | None]
    terminationDetail: NotRequired[str | None]


class ProviderStatus(StatusObject):
    """The provider API's (/api/services/compute)."""

    documentId: NotRequired[str]
    algorithmLogUrl: NotRequired[str]
    resultsUrls: NotRequired[list[str]]


class OperatorStatus(StatusObject):
    """The Operator-Service's (/api/v1/…/compute)."""

    configlogUrl: NotRequired[str]
    publishlogUrl: NotRequired[str]
    algologUrl: NotRequired[str]
    outputsUrl: NotRequired[list[str]]
    output: NotRequired[Annotated[dict[str, Any], Field(description="the stage output, echoed")]]
