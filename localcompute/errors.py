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


class JobNotFoundError(LocalComputeError):
    """No job has that id."""


class JobConflictError(LocalComputeError):
    """The job is not in a state that allows this."""


class TransitionRefusedError(JobConflictError):
    """The job has moved on: this status change is no longer allowed."""


class StoreError(LocalComputeError):
    """The job store failed."""


class DockerUnavailableError(LocalComputeError):
    """The Docker engine does not answer."""


class ImageNotFoundError(LocalComputeError):
    """The image is not on this host and could not be pulled."""


class ContainerError(LocalComputeError):
    """A Docker call about a container failed."""
