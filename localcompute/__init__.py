"""localcompute: Ocean Protocol compute-to-data on one host, with Docker and SQLite.

The names below are imported when first used, so that `import localcompute` (and
every command of the CLI) pays only for what it touches.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "AlgorithmSpec": "localcompute.core.jobspec",
    "FileSource": "localcompute.core.jobspec",
    "InputSpec": "localcompute.core.jobspec",
    "Job": "localcompute.core.models",
    "JobQuery": "localcompute.core.models",
    "JobSpec": "localcompute.core.jobspec",
    "Preconditions": "localcompute.core.models",
    "ResultFile": "localcompute.core.models",
    "Engine": "localcompute.engine",
    "LocalComputeError": "localcompute.core.errors",
    "Settings": "localcompute.core.settings",
    "load_settings": "localcompute.core.config_file",
    "JobStatus": "localcompute.core.status",
    "StopRequest": "localcompute.core.status",
    "TerminationReason": "localcompute.core.status",
}

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

if TYPE_CHECKING:
    from localcompute.core.config_file import load_settings
    from localcompute.core.errors import LocalComputeError
    from localcompute.core.jobspec import AlgorithmSpec, FileSource, InputSpec, JobSpec
    from localcompute.core.models import Job, JobQuery, Preconditions, ResultFile
    from localcompute.core.settings import Settings
    from localcompute.core.status import JobStatus, StopRequest, TerminationReason
    from localcompute.engine import Engine


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'localcompute' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value
