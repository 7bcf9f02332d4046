"""What `localcompute run` tells of a finished job: its exit code, the one line that
names the cause, and the status object --json prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from localcompute.client import RemoteJob

# Exit codes besides the algorithm's own (README, "localcompute run").
EXIT_DATA_FAILED = 65  # an input could not be provisioned (sysexits EX_DATAERR)
EXIT_ALGORITHM_FAILED = 66  # the algorithm or its image could not be provisioned
EXIT_SYSTEM = 70  # localcompute failed under the job (EX_SOFTWARE)
EXIT_UNAVAILABLE = 69  # no server, no Docker (EX_UNAVAILABLE)
EXIT_TIMEOUT = 124  # as timeout(1)
EXIT_STOPPED = 130  # stopped with Ctrl-C (a signal that ends the command: 128 + its number)
EXIT_OOM = 137  # killed for memory, as the kernel's SIGKILL

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
        return EXIT_DATA_FAILED
    if job.status == 32:
        return EXIT_ALGORITHM_FAILED
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
