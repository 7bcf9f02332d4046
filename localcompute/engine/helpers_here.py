"""Whether a job's helper steps (the fetch, the output filter) run as processes of this
host rather than in containers.

They do when that can change nothing but the time: the runtime's containers see the
job's folder where the server made it (the local engine), the server can start a process
as the job's user, and that user can run an interpreter with the helpers. Then the same
helper program does the same work, as the same user, and the next step finds exactly the
folder it would have found. As a container is given its files by mounts, the process is
given them by the server: the folders and files it works on are opened for it and handed
over by descriptor, which it opens again as the job's user (so a file that user may not
read fails as it would in the container).

The fetch runs here when it downloads nothing (raw code and the provider's local files):
one with a URL to download runs in its container, with its own network. The filter runs
here after the algorithm's container is gone, so nothing of the algorithm runs beside it:
it only lists, reads and moves what the algorithm left, never follows a link, and runs
nothing from the outputs. On a Swarm node, or with `host_fetch` / `host_filter` false,
each runs in its container. The algorithm always runs in its container.
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


def host_python(ctx: JobContext, runtime: ContainerRuntime, *, allowed: bool) -> str | None:
    """The interpreter a helper step of this job runs with as a process of this host, or
    None when it runs in its container. Blocks (it looks at the helpers' folders once)."""
    if not (allowed and runtime.shares_host_files and can_run_as(ctx.user)):
        return None
    return helper_python(*parse_user(ctx.user))


def host_fetch(ctx: JobContext, runtime: ContainerRuntime, *, allowed: bool) -> HostFetch | None:
    """The fetch to run here, or None for its container. Blocks (it opens files)."""
    spec = ctx.job.spec
    python = host_python(ctx, runtime, allowed=allowed and spec.downloads_nothing)
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


def open_filter_folders(ws: Workspace) -> tuple[int, int, int]:
    """The outputs, results and meta folders, opened for a filter run here."""
    fds: list[int] = []
    try:
        for folder in (ws.outputs, ws.results, ws.meta):
            fds.append(os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW))
    except OSError:
        for fd in fds:
            os.close(fd)
        raise
    return fds[0], fds[1], fds[2]
