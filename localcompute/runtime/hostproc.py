"""A helper program run as a process of this host instead of in a container.

A fetch with nothing to download only copies the provider's own files and writes the
algorithm's code into the job's folder; on the local engine that folder is on this
host, so a container buys it nothing but its lifecycle, about a third of a trivial
job's time. The same program (helper/fetch.py, standard library only) runs here as it
would there: as the job's user (so it reads only what the container's user could and
what it writes belongs to that user), with the helper image's interpreter flags, on
the job's cores, and killed with the server (PR_SET_PDEATHSIG), as a container's
process would be with its engine: a fetch left by a crash is run again from a clean
folder, so none may still be writing. The output filter, once the algorithm's container
is gone, only lists, reads and moves what the algorithm left (never following a link,
never running anything of it), so it runs here too, with no privilege to gain
(PR_SET_NO_NEW_PRIVS).

The algorithm never runs here: it is a stranger's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from localcompute.runtime.base import ContainerExit

HELPER_ON_HOST = Path(__file__).resolve().parent.parent / "helper"
# As in the helper image: no site-packages (the helpers use the standard library only,
# and without them a start takes a third of the time), no user site, no environment
# variables of Python's, and no bytecode written beside the helpers.
HELPER_FLAGS = ("-E", "-s", "-S", "-B")
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
READ, SEARCH = 0o4, 0o1
# What a helper process reads of this host's environment: nothing but its PATH.
HELPER_ENVIRONMENT = {"PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}


def parse_user(user: str) -> tuple[int, int]:
    """`uid:gid` (run_as_user) as numbers; ValueError for a name, which only Docker resolves."""
    uid, _, gid = user.partition(":")
    return int(uid), int(gid or uid)


def can_run_as(user: str) -> bool:
    """Whether this server can start a process as `user`: as root, any numeric user;
    otherwise only its own (run_as_user = auto)."""
    try:
        uid, gid = parse_user(user)
    except ValueError:
        return False
    return os.geteuid() == 0 or (uid == os.geteuid() and gid == os.getegid())


def reachable_by(path: Path, uid: int, gid: int, want: int = READ) -> bool:
    """Whether `uid:gid` can reach `path` (search every folder above it) and then do
    `want` to it (0o4 read, 0o1 search), by the mode bits. A container is given its
    files by mounts, whatever the folders above them allow; a process of this host is
    not, so where a folder above a job's file shuts the job's user out, the step stays
    in a container."""
    if uid == 0:
        return True
    try:
        target = path.resolve(strict=True)
        checks = [(folder, 0o1) for folder in reversed(target.parents)] + [(target, want)]
        for place, want in checks:
            st = place.stat()
            shift = 6 if st.st_uid == uid else 3 if st.st_gid == gid else 0
            if not (st.st_mode >> shift) & want:
                return False
    except OSError:
        return False
    return True


# Interpreters a helper may run with: the server's own, or the system's (the server's may
# live where the job's user cannot reach, as pyenv's under /root). The helpers use the
# standard library only, of any Python the helper image could have.
INTERPRETERS = (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3")


@functools.cache
def helper_python(uid: int, gid: int) -> str | None:
    """The first interpreter `uid:gid` can run with the helpers it can read; None if none."""
    if not reachable_by(HELPER_ON_HOST / "fetch.py", uid, gid):
        return None
    for candidate in INTERPRETERS:
        path = Path(candidate)
        # Its folder as named (a venv's bin/) and the file it leads to (pyenv's, say).
        reachable = reachable_by(path.parent, uid, gid, SEARCH) and reachable_by(
            path, uid, gid, SEARCH
        )
        if path.is_file() and reachable:
            return candidate
    return None


def by_descriptor(fd: int) -> str:
    """The path by which a process reaches what the server opened for it as `fd`: as a
    container reaches its mounts, whatever the folders above allow (the kernel checks the
    file's own permissions again when it is opened by it)."""
    return f"/proc/self/fd/{fd}"


def helper_argv(python: str, program: str, *args: str) -> list[str]:
    """The command that runs helper `program` (fetch.py, …) with `python`."""
    return [python, *HELPER_FLAGS, str(HELPER_ON_HOST / program), *args]


def _child_setup(
    parent: int, user: tuple[int, int] | None, cores: Sequence[int]
) -> Callable[[], None]:
    """What the child does between fork and exec: become the job's user (no groups but
    its own), take the job's cores, and ask the kernel for SIGKILL when the server goes,
    after the change of user (which would clear the request); a parent already gone by
    then is caught by its pid. Here rather than in subprocess's user= and group=, which
    uvloop's loop (the CLI's) does not take."""
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before the fork, not in the child
    prctl = libc.prctl

    def setup() -> None:
        if user is not None:
            uid, gid = user
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        if cores:
            os.sched_setaffinity(0, cores)
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # Nothing it runs can gain what the job's user lacks (a set-uid file, say).
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(137)

    return setup


class HostProcess:
    """One run of a helper program: started, awaited, stopped; its output kept (up to
    `log_limit` bytes) for the step's log, as a container's would be."""

    def __init__(
        self,
        argv: list[str],
        *,
        user: str,
        pass_fds: Sequence[int] = (),
        cores: Sequence[int] = (),
        log_limit: int,
    ) -> None:
        self.argv = argv
        self.pass_fds = tuple(pass_fds)
        self.uid, self.gid = parse_user(user)
        self.cores = tuple(cores)
        self.log_limit = log_limit
        self.output = bytearray()
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._started_at: float | None = None

    async def start(self) -> None:
        switch = os.geteuid() == 0 and (self.uid, self.gid) != (os.geteuid(), os.getegid())
        self._process = await asyncio.create_subprocess_exec(
            *self.argv,
            env=HELPER_ENVIRONMENT,
            cwd="/",
            pass_fds=self.pass_fds,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # a stop reaches what it started too
            preexec_fn=_child_setup(
                os.getpid(), (self.uid, self.gid) if switch else None, self.cores
            ),
        )
        self._started_at = time.time()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        while chunk := await self._process.stdout.read(64 * 1024):
            # One byte past the limit: the log's writer then marks it cut.
            room = self.log_limit + 1 - len(self.output)
            if room > 0:
                self.output += chunk[:room]

    async def wait(self) -> ContainerExit:
        assert self._process is not None and self._reader is not None
        code = await self._process.wait()
        await self._reader
        return ContainerExit(
            # As Docker reports a signal: 128 + its number.
            exit_code=128 - code if code < 0 else code,
            oom_killed=False,
            started_at=self._started_at,
            finished_at=time.time(),
        )

    async def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds, to its whole process group."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.wait()), wait)
                return
