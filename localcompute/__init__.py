"""localcompute: Ocean Protocol compute-to-data on one host, with Docker and SQLite."""

from __future__ import annotations

from localcompute.core.errors import LocalComputeError
from localcompute.core.models import (
    AlgorithmSpec,
    FileSource,
    InputSpec,
    Job,
    JobQuery,
    JobSpec,
    Preconditions,
    ResultFile,
)
from localcompute.core.settings import Settings, load_settings
from localcompute.core.status import JobStatus, StopRequest, TerminationReason
from localcompute.engine import Engine

__version__ = "0.1.0"

__all__ = [
    "AlgorithmSpec",
    "Engine",
    "FileSource",
    "InputSpec",
    "Job",
    "JobQuery",
    "JobSpec",
    "JobStatus",
    "LocalComputeError",
    "Preconditions",
    "ResultFile",
    "Settings",
    "StopRequest",
    "TerminationReason",
    "__version__",
    "load_settings",
]
