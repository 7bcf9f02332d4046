"""The engine: the library entry point (api.py), a job's way through its containers
(pipeline.py), how it ended (outcome in pipeline.py), and its results list (publish.py).
It knows nothing of HTTP."""

from __future__ import annotations

from localcompute.engine.api import Engine

__all__ = ["Engine"]
