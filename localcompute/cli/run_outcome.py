"""What `localcompute run` tells of a finished job: its exit code, the one line that
names the cause, and the status object --json prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from localcompute.cli.exits import (
    EXIT_ALGORITHM_UNAVAILABLE,
    EXIT_INPUT_UNAVAILABLE,
    EXIT_OOM,
    EXIT_STOPPED,
    EXIT_SYSTEM,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
)
from localcompute.client import RemoteJob

__all__ = ["EXIT_ALGORITHM_UNAVAILABLE", "EXIT_UNAVAILABLE", "describe", "exit_code", "json_status"]

# A local run's status fields that point at the command's own server, gone once it exits.
DEAD_URLS = ("algorithmLogUrl", "resultsUrls")


def json_status(raw: dict[str, Any], paths: dict[str, Path], *, local: bool) -> dict[str, Any]:
    """The final status object as the provider gave it, each result with its local `path`.

    A local run's URLs pointed at the command's own server, gone once it exits: they go.
    """
    status = dict(raw)
    status["results"] = [
        {**r, "path": str(paths[r["filename"]].resolve())} if r.get("filename") in paths else r
        for r in raw.get("results") or []
    ]
    if local:
        for key in DEAD_URLS:
            status.pop(key, None)
    return status


def exit_code(job: RemoteJob, *, stopped: bool = False) -> int:
    """The algorithm's own exit code when it ran to its end; else a code that says why."""
    if job.status == 31:
        return EXIT_INPUT_UNAVAILABLE
    if job.status == 32:
        return EXIT_ALGORITHM_UNAVAILABLE
    reason = job.termination_reason
    if reason == "stopped" or stopped:
        return EXIT_STOPPED
    if reason == "timeout":
        return EXIT_TIMEOUT
    if reason == "oom":
        return EXIT_OOM
    if reason == "error":
        return EXIT_SYSTEM
    return job.exit_code or 0


def describe(job: RemoteJob) -> str:
    """One line that names the cause."""
    reason = job.termination_reason
    if job.status in (31, 32):
        return job.reason
    if reason in ("completed", "failed"):
        return f"the algorithm exited with code {job.exit_code}"
    return job.reason
