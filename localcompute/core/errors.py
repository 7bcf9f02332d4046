"""One exception hierarchy for the whole service.

Each class's docstring is its default message. The HTTP layer maps the classes to
answers in one middleware; the engine never speaks HTTP.
"""

from __future__ import annotations

from typing import Any


class LocalComputeError(Exception):
    """Something went wrong in localcompute."""

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.details = details
        super().__init__(self.message)


class ConfigError(LocalComputeError):
    """The configuration is not valid."""


class InvalidJobError(LocalComputeError):
    """The job request is not valid."""


class UnknownEnvironmentError(InvalidJobError):
    """No environment has that id."""


class EnvironmentUnavailableError(InvalidJobError):
    """The environment cannot run jobs on this host now."""


class SignatureError(LocalComputeError):
    """Invalid signature provided. Please check the nonce or documentId."""


class NonceError(SignatureError):
    """The nonce is not greater than the last one accepted from this address."""


class TokenError(SignatureError):
    """Invalid token."""


class AccessDeniedError(LocalComputeError):
    """The caller may not use this service."""


class NetworkDeniedError(AccessDeniedError):
    """The caller's address may not read the operator's pages (/metrics, the dashboard):
    no credential would change that, so 403, not 401."""


class RefusedError(LocalComputeError):
    """The request was refused.

    `payload` is what Ocean's clients expect under "error": a sentence, or a
    {resource: code} object such as {"dataset": "did_not_found"}.
    """

    def __init__(self, payload: str | dict[str, str], **details: object) -> None:
        self.payload = payload
        super().__init__(payload if isinstance(payload, str) else str(payload), **details)


class LimitError(LocalComputeError):
    """Too many: a limit on this consumer or client was reached; nothing was changed.

    `limit` names it as its setting is named (max_waiting, starts_per_second, …), `value`
    is its value, `retry_after` the seconds until trying again can succeed (None when
    that hangs on other jobs ending, not on the clock).
    """

    def __init__(
        self, message: str, *, limit: str, value: float, retry_after: float | None = None
    ) -> None:
        self.limit = limit
        self.value = value
        self.retry_after = retry_after
        super().__init__(message, limit=limit, value=value, retry_after=retry_after)


class RequestValidationError(LocalComputeError):
    """Validation error"""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__("Validation error")


class JobNotFoundError(LocalComputeError):
    """No job has that id."""


class JobConflictError(LocalComputeError):
    """The job is not in a state that allows this."""


class AgreementInUseError(JobConflictError):
    """`agreementId` already in use for other job."""


class TransitionRefusedError(JobConflictError):
    """The job has moved on: this status change is no longer allowed."""


class StoreError(LocalComputeError):
    """The job store failed."""


class DockerUnavailableError(LocalComputeError):
    """The Docker engine does not answer."""


class ImageNotFoundError(LocalComputeError):
    """The image is not on this host and could not be pulled."""


class RemoteError(LocalComputeError):
    """The server refused the request; `status` is its HTTP status, `body` its answer."""

    def __init__(self, message: str, *, status: int, body: object = None) -> None:
        self.status = status
        self.body = body
        super().__init__(message)


class InputRefusedError(RemoteError):
    """The provider refused an input of the job: it serves no dataset with that DID, or
    the dataset's file is not available."""


class AlgorithmRefusedError(RemoteError):
    """The provider refused the job's algorithm: unknown, not allowed on the dataset, or
    its image is not available."""


class NoServerError(LocalComputeError):
    """No localcompute server answers there."""


class JobRemovedError(LocalComputeError):
    """The job was removed (deleted, or its results expired): its results and logs are gone."""


class NoLogError(LocalComputeError):
    """The job has no algorithm log: its algorithm never ran."""


class ContainerError(LocalComputeError):
    """A Docker call about a container failed."""


class ReceiptError(LocalComputeError):
    """The receipt does not hold: its signature, its signer, its shape or its files."""
