"""Gates: a point where an algorithm the FakeRuntime runs (a process on this host) waits
until the test lets it on.

A test that shows what happens while a job runs (live logs, a stop, a held slot) holds the
job at a gate for exactly as long as it looks, where a `sleep` would guess: too short and
the job has ended under a slow machine, too long and every run waits for it.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import shlex
import time
from pathlib import Path

_numbers = itertools.count()


class Gate:
    """A named pipe. `wait` is the shell command that blocks on it; `open()` lets the one
    process waiting there through. One gate a crossing: a second `wait` needs a second
    gate, since a pipe's byte reaches only the reader that has it open."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / f"gate-{os.getpid()}-{next(_numbers)}"
        self.opened = False
        os.mkfifo(self.path)

    @property
    def wait(self) -> str:
        return f"read _ < {shlex.quote(str(self.path))}"

    async def open(self, timeout: float = 30) -> None:
        """Returns once the waiting process has been let through; fails if none came to the
        gate within `timeout` seconds (the job ended, or never reached it)."""
        deadline = time.monotonic() + timeout
        while not self._let_through():
            if time.monotonic() > deadline:
                raise AssertionError(f"no process waited at {self.path}")
            await asyncio.sleep(0.005)

    def release(self, timeout: float = 0.5) -> None:
        """What a test that failed halfway leaves: whatever waits, or comes within
        `timeout`, is let through, so its job can end and the server stop."""
        deadline = time.monotonic() + timeout
        while not self.opened and not self._let_through() and time.monotonic() < deadline:
            time.sleep(0.005)

    def _let_through(self) -> bool:
        try:
            # Non-blocking: opening a pipe to write fails until a reader has it open.
            fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno != errno.ENXIO:
                raise
            return False
        try:
            os.write(fd, b"\n")
        finally:
            os.close(fd)
        self.opened = True
        return True


class Gates:
    """The gates of one test, made in the order its job meets them; those left shut when
    the test ends (it failed) are released in that order."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._made: list[Gate] = []

    def __call__(self) -> Gate:
        gate = Gate(self._folder)
        self._made.append(gate)
        return gate

    def release(self) -> None:
        for gate in self._made:
            gate.release()
