"""Whether a job's fetch runs as a process of this host rather than in a container.

It does when that can change nothing but the time: the job downloads nothing (raw code
and the provider's local files), the runtime's containers see the job's folder where
the server made it (the local engine), the server can start a process as the job's
user, and that user can run an interpreter with the helpers. Then the same helper
program does the same work, as the same user, and the algorithm finds exactly the
folder it would have found. As a container is given its files by mounts, the process is
given them by the server: the job's folder, its instructions and the provider's files
are opened for it and handed over by descriptor, which it opens again as the job's user
(so a file that user may not read fails as it would in the container). Otherwise (a Swarm
node, a URL to download, `host_fetch = false`) the fetch runs in its container. The
algorithm and the filter always run in containers.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from localcompute.runtime import ContainerRuntime
from localcompute.runtime.containers import JobContext
from localcompute.runtime.hostproc import by_descriptor, can_run_as, helper_python, parse_user
from localcompute.runtime.workspace import Workspace


@dataclass(frozen=True)
class HostFetch:
    """A fetch to run here: with which interpreter, and the provider's files, open, in
    JobSpec.local_paths's order; close() once the process has them."""

    python: str
    fds: tuple[int, ...]

    @property
    def sources(self) -> list[str]:
        """The files as the process names them: its own descriptors."""
        return [by_descriptor(fd) for fd in self.fds]

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def host_fetch(ctx: JobContext, runtime: ContainerRuntime, *, allowed: bool) -> HostFetch | None:
    """The fetch to run here, or None for its container. Blocks (it opens files)."""
    spec = ctx.job.spec
    if not (allowed and runtime.shares_host_files and spec.downloads_nothing):
        return None
    if not can_run_as(ctx.user):
        return None
    python = helper_python(*parse_user(ctx.user))
    if python is None:
        return None
    fds: list[int] = []
    try:
        for path in spec.local_paths:
            # Non-blocking: a file that became a FIFO since the job was accepted must not
            # hang the server; anything but a plain file is the container's to refuse.
            fds.append(os.open(Path(path).resolve(), os.O_RDONLY | os.O_NONBLOCK))
            if not stat.S_ISREG(os.fstat(fds[-1]).st_mode):
                raise OSError(f"not a regular file: {path}")
    except OSError:
        # Gone, say: the container's fetch fails on it, in the words the log always had.
        HostFetch(python, tuple(fds)).close()
        return None
    return HostFetch(python, tuple(fds))


def open_workspace(ws: Workspace) -> tuple[int, int]:
    """The job's data folder and its fetch instructions, opened for the process once the
    folder is laid out (by descriptor: the folders above may shut the job's user out)."""
    data = os.open(ws.data, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return data, os.open(ws.fetch_spec, os.O_RDONLY)
    except OSError:
        os.close(data)
        raise
