"""The requests of Ocean Node's compute dialect, as ocean.js 8.x sends them.

Parameters come from the query (GET, and PUT stop with an empty body) or a JSON
body (POST); parameter order differs between client versions, so everything is
read by name. `null`, "" and the literal "null" mean absent.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator

from localcompute.core.jobspec import Container
from localcompute.web.examples import NODE_FREE_COMPUTE, examples
from localcompute.web.params import (
    ADDRESS_PATTERN,
    META_OR_DOCUMENT_ID,
    Nonce,
    OptionalText,
    RequestModel,
    Signature,
    absent_if_empty,
)

_ADDRESS = re.compile(ADDRESS_PATTERN)


def _absent(value: Any) -> Any:
    """ocean.js 8.0 sends `"signature": null` in token mode; query strings say "null"."""
    return None if value in ("null", "undefined") else absent_if_empty(value)


def _address(value: Any) -> Any:
    if isinstance(value, str) and not _ADDRESS.match(value):
        raise ValueError(f"not an Ethereum address: {value!r}")
    return value


ADDRESS_SCHEMA = WithJsonSchema({"type": "string", "pattern": ADDRESS_PATTERN})
Maybe = Annotated[str | None, BeforeValidator(_absent)]
MaybeSignature = Annotated[Signature | None, BeforeValidator(_absent)]
MaybeNonce = Annotated[Nonce | None, BeforeValidator(_absent)]
Address = Annotated[str, BeforeValidator(_address), ADDRESS_SCHEMA]
MaybeAddress = Annotated[
    Annotated[str, ADDRESS_SCHEMA] | None, BeforeValidator(_address), BeforeValidator(_absent)
]


class Signed(RequestModel):
    """A signature over consumerAddress + nonce + command, or none (then a token)."""

    signature: MaybeSignature = None
    nonce: MaybeNonce = None


class FileObject(RequestModel):
    """Where a file is: only `url` files can be fetched without a chain or a gateway."""

    type: str = Field(min_length=1)
    url: OptionalText = None
    method: str = "GET"
    headers: dict[str, str] | list[dict[str, str]] | None = None


class Asset(RequestModel):
    fileObject: FileObject | None = None
    documentId: OptionalText = None
    serviceId: OptionalText = None
    transferTxId: OptionalText = None
    userdata: dict[str, Any] | None = None

    _absent = field_validator("userdata", "fileObject", mode="before")(absent_if_empty)


class ContainerRef(Container, RequestModel):
    """ocean.js 8's container: core's fields plus a Dockerfile we do not build."""

    dockerfile: OptionalText = None
    additionalDockerFiles: Any = None


class AlgorithmMeta(RequestModel):
    rawcode: OptionalText = None
    container: ContainerRef


class Algorithm(RequestModel):
    """Raw code (or a url fileObject) in `meta`'s container, or a configured algorithm's DID."""

    model_config = ConfigDict(**RequestModel.model_config, json_schema_extra=META_OR_DOCUMENT_ID)

    meta: AlgorithmMeta | None = None
    fileObject: FileObject | None = None
    documentId: OptionalText = None
    serviceId: OptionalText = None
    transferTxId: OptionalText = None
    algocustomdata: Any = None
    userdata: dict[str, Any] | None = None
    envs: dict[str, str] | None = None

    _absent = field_validator("meta", "fileObject", "userdata", mode="before")(absent_if_empty)


class ResourceAmount(RequestModel):
    id: str = Field(min_length=1)
    amount: float = Field(ge=0)


class FreeComputeRequest(Signed):
    model_config = ConfigDict(**Signed.model_config, json_schema_extra=examples(NODE_FREE_COMPUTE))

    consumerAddress: Address
    environment: str = Field(min_length=1)
    datasets: list[Asset] = Field(default_factory=list)
    dataset: Asset | None = None  # legacy: datasets[0], read only when datasets is empty
    algorithm: Algorithm
    resources: list[ResourceAmount] | None = None
    maxJobDuration: float | None = Field(None, gt=0)
    metadata: dict[str, str | int | float | bool] | None = None
    additionalViewers: list[Address] | None = None
    queueMaxWaitTime: float | None = Field(None, ge=0)
    # What needs more than this server has; refused by name when sent.
    output: Any = None
    outputBucketId: Any = None
    encryptedDockerRegistryAuth: Any = None

    _absent = field_validator(
        "dataset", "output", "outputBucketId", "encryptedDockerRegistryAuth", mode="before"
    )(_absent)


class StatusRequest(RequestModel):
    consumerAddress: MaybeAddress = None
    jobId: Maybe = None
    agreementId: Maybe = None


class StopComputeRequest(Signed):
    consumerAddress: MaybeAddress = None
    jobId: str = Field(min_length=1)
    agreementId: Maybe = None


class ResultRequest(Signed):
    consumerAddress: MaybeAddress = None
    jobId: str = Field(min_length=1)
    index: int = Field(ge=0)


class LogsRequest(Signed):
    consumerAddress: MaybeAddress = None
    jobId: str = Field(min_length=1)


class EventsRequest(Signed):
    consumerAddress: MaybeAddress = None
    lastEventId: Maybe = Field(
        None, description="Resume after this event id (the Last-Event-ID header wins)."
    )


class NonceRequest(RequestModel):
    userAddress: Address


class EnvironmentsRequest(RequestModel):
    chainId: Maybe = None


class CreateTokenRequest(Signed):
    address: Address
    validUntil: int | None = Field(None, description="epoch milliseconds; null: no end asked")
    chainId: Any = None


class InvalidateTokenRequest(Signed):
    address: Address
    token: str = Field(min_length=1)


class DirectCommandRequest(RequestModel):
    command: str = Field(min_length=1)
