"""The engine: the library entry point (api.py); which jobs run (scheduler.py, pool.py);
a job's way through its containers (pipeline.py, algorithm_step.py, steps.py), how it
ended (outcome.py) and its results list (publish.py); the rules a job is held to
(policy.py, catalog.py). It knows nothing of HTTP.

`Engine` is imported when first used: importing a pure module of the package
(`localcompute.engine.pool`) loads nothing else.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from localcompute.engine.api import Engine

__all__ = ["Engine"]


def __getattr__(name: str) -> Any:
    if name != "Engine":
        raise AttributeError(f"module 'localcompute.engine' has no attribute {name!r}")
    value = importlib.import_module("localcompute.engine.api").Engine
    globals()[name] = value
    return value
