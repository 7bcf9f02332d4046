"""The requests of the provider compute API (/api/services), as Ocean's clients send them.

Empty optional fields are absent; nested objects may come as JSON strings; fields
we do not read are ignored.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from localcompute.core.jobspec import Container
from localcompute.web.examples import PROVIDER_START, examples
from localcompute.web.params import (
    META_OR_DOCUMENT_ID,
    AddressText,
    Nonce,
    OptionalText,
    RequestModel,
    Signature,
    absent_if_empty,
)


def _json_object(value: Any) -> Any:
    """Clients may send nested objects as JSON strings."""
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class DatasetRef(RequestModel):
    documentId: str = Field(min_length=1)
    serviceId: OptionalText = None
    transferTxId: OptionalText = None
    userdata: dict[str, Any] | str | None = None

    _absent = field_validator("userdata", mode="before")(absent_if_empty)


class ContainerRef(Container, RequestModel):
    """The request's container: the fields of core's Container, other keys ignored."""


def _one_of_present(*fields: str) -> dict[str, Any]:
    """JSON Schema for "at least one of `fields`, not blank", as the handler checks it."""
    present = {"type": "string", "pattern": r"\S"}
    return {"anyOf": [{"required": [f], "properties": {f: present}} for f in fields]}


class AlgorithmMeta(RequestModel):
    """Raw code to run, or a URL to fetch it from; raw code wins when both are sent."""

    model_config = ConfigDict(
        **RequestModel.model_config, json_schema_extra=_one_of_present("rawcode", "url")
    )

    rawcode: OptionalText = None
    url: OptionalText = None
    container: ContainerRef

    _parse_json = field_validator("container", mode="before")(_json_object)


class AlgorithmRef(RequestModel):
    """A published algorithm by its DID, or one given in `meta`; meta wins."""

    model_config = ConfigDict(**RequestModel.model_config, json_schema_extra=META_OR_DOCUMENT_ID)

    documentId: OptionalText = None
    meta: AlgorithmMeta | None = None
    serviceId: OptionalText = None
    transferTxId: OptionalText = None
    algocustomdata: Any = None

    _parse_json = field_validator("meta", "algocustomdata", mode="before")(_json_object)
    _absent = field_validator("meta", mode="before")(absent_if_empty)


class StartRequest(RequestModel):
    model_config = ConfigDict(
        **RequestModel.model_config, json_schema_extra=examples(PROVIDER_START)
    )

    dataset: DatasetRef
    algorithm: AlgorithmRef
    additionalDatasets: list[DatasetRef] = Field(default_factory=list, alias="additionalInputs")
    environment: str = Field(min_length=1)
    consumerAddress: AddressText
    nonce: Nonce
    signature: Signature

    _parse_json = field_validator("dataset", "algorithm", mode="before")(_json_object)


class StatusRequest(RequestModel):
    consumerAddress: AddressText
    # Clients send absent filters as empty strings (and sign them as such).
    jobId: OptionalText = None
    documentId: OptionalText = None
    nonce: Nonce | None = None
    signature: OptionalText = None


class StopJobRequest(RequestModel):
    consumerAddress: AddressText
    jobId: OptionalText = None
    documentId: OptionalText = None
    nonce: Nonce
    signature: Signature


class DeleteRequest(StopJobRequest):
    # ocean.js 3.x sends no nonce on delete: it is then taken as the stored one + 1.
    nonce: Nonce | None = None  # type: ignore[assignment]


class ResultRequest(RequestModel):
    jobId: str = Field(min_length=1)
    index: int = Field(ge=0)
    consumerAddress: AddressText
    nonce: Nonce
    signature: Signature


class NonceRequest(RequestModel):
    userAddress: AddressText


class EnvironmentsRequest(RequestModel):
    chainId: int | None = None


class InitializeRequest(RequestModel):
    datasets: list[DatasetRef] = Field(min_length=1)
    algorithm: AlgorithmRef
    compute: dict[str, Any]
    consumerAddress: AddressText


class LogsRequest(RequestModel):
    consumerAddress: AddressText
    jobId: str = Field(min_length=1)
    nonce: Nonce
    signature: Signature


class EventsRequest(RequestModel):
    consumerAddress: AddressText
    nonce: Nonce
    signature: Signature
    lastEventId: OptionalText = Field(
        None, description="Resume after this event id (the Last-Event-ID header wins)."
    )
