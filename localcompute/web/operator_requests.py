"""The requests of the Operator-Service API v1, as providers send them.

Filters shorter than 2 characters are absent, as in the deployed operator; empty
urls and empty remote objects are absent, as in the provider API.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from localcompute.web.params import Nonce, OptionalText, RequestModel, Signature, absent_if_empty
from localcompute.web.provider_requests import ContainerRef


class Signed(RequestModel):
    signature: Signature | None = None
    providerSignature: Signature | None = None
    nonce: Nonce | None = None

    @property
    def any_signature(self) -> str | None:
        return self.signature or self.providerSignature


def _short_is_none(value: Any) -> Any:
    """The deployed operator treats filters shorter than 2 characters as absent."""
    return None if isinstance(value, str) and len(value) < 2 else value


class JobFilter(Signed):
    agreementId: str | None = Field(None, alias="serviceAgreementId")
    jobId: str | None = None
    owner: str | None = None

    _short = field_validator("agreementId", "jobId", "owner", mode="before")(_short_is_none)


class OwnerFilter(Signed):
    """runningjobs and environments: a sent owner is signed, and narrows the answer."""

    owner: str | None = None

    _short = field_validator("owner", mode="before")(_short_is_none)


class ResultRequest(Signed):
    jobId: str = Field(min_length=1)
    index: int = Field(ge=0)
    owner: str = Field(min_length=1)


def _urls_given(value: Any) -> Any:
    """Empty strings, alone or in a list, mean no url, as they do in the provider API."""
    if isinstance(value, list):
        value = [u for u in value if u != ""] or None
    return absent_if_empty(value)


class InputItem(RequestModel):
    index: int | None = None
    id: str = Field(min_length=1)
    url: str | list[str] | None = None
    remote: dict[str, Any] | None = None

    _absent = field_validator("url", mode="before")(_urls_given)
    _no_remote = field_validator("remote", mode="before")(absent_if_empty)


class AlgorithmItem(RequestModel):
    id: OptionalText = None
    url: str | list[str] | None = None
    rawcode: OptionalText = None
    remote: dict[str, Any] | None = None
    container: ContainerRef
    algocustomdata: Any = None

    _absent = field_validator("url", mode="before")(_urls_given)
    _no_remote = field_validator("remote", mode="before")(absent_if_empty)


class ComputeItem(RequestModel):
    Instances: int | None = None
    namespace: str | None = None
    maxtime: float | None = None


class WorkflowStage(RequestModel):
    index: int | None = None
    input: list[InputItem] = Field(default_factory=list)
    compute: ComputeItem = Field(default_factory=ComputeItem)
    algorithm: AlgorithmItem
    output: dict[str, Any] = Field(default_factory=dict)


class CreateRequest(Signed):
    agreementId: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    workflow: dict[str, Any]
    environment: str | None = None
    chainId: int | str | None = None


class LogsRequest(Signed):
    jobId: str = Field(min_length=1)
    owner: str | None = None

    _short = field_validator("owner", mode="before")(_short_is_none)
