"""localcompute: Ocean Protocol compute-to-data on one host, with Docker and SQLite."""

from __future__ import annotations

from localcompute.engine import Engine
from localcompute.errors import LocalComputeError
from localcompute.models import AlgorithmSpec, FileSource, InputSpec, Job, JobSpec, ResultFile
from localcompute.settings import Settings, load_settings
from localcompute.status import JobStatus, StopRequest, TerminationReason

__version__ = "0.1.0"

__all__ = [
    "AlgorithmSpec",
    "Engine",
    "FileSource",
    "InputSpec",
    "Job",
    "JobSpec",
    "JobStatus",
    "LocalComputeError",
    "ResultFile",
    "Settings",
    "StopRequest",
    "TerminationReason",
    "__version__",
    "load_settings",
]
