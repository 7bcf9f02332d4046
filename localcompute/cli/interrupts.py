"""Ctrl-C, SIGTERM and SIGHUP during `localcompute run`, from its first await to its exit.

A first Ctrl-C while the job runs stops the job and still collects its logs and
results. A Ctrl-C before there is a job, a second one, SIGTERM or SIGHUP make the
command leave: its task is cancelled, so the `finally` blocks on the way out remove
whatever the run made. Nothing interrupts that clean-up: later signals are only
counted. No signal ever raises KeyboardInterrupt inside the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from types import TracebackType

LEAVING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupts:
    def __init__(self, say: Callable[[str], None], leaving: str) -> None:
        self._say = say
        self._leaving = leaving  # what leaving does, for the line that says so
        self._task: asyncio.Task[object] | None = None
        self._on_stop: Callable[[], str] | None = None
        self.stopping = False  # the first Ctrl-C asked the job to stop
        self.left_by: signal.Signals | None = None  # the signal that made the command leave
        self._lingering: asyncio.Future[None] | None = None

    def __enter__(self) -> Interrupts:
        self._task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in LEAVING:
            loop.add_signal_handler(sig, self._signalled, sig)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        loop = asyncio.get_running_loop()
        for sig in LEAVING:
            loop.remove_signal_handler(sig)

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a command a signal ended."""
        return 128 + (self.left_by or signal.SIGINT)

    def job_started(self, on_stop: Callable[[], str]) -> None:
        """From now on a first Ctrl-C calls `on_stop`, which stops the job and says how."""
        self._on_stop = on_stop

    def job_ended(self) -> None:
        """The job is over: a Ctrl-C now leaves at once (skipping the downloads)."""
        self._on_stop = None

    async def linger(self) -> None:
        """Wait, the job over, until a signal says to go (`run --ui` keeps its page up)."""
        self._lingering = asyncio.get_running_loop().create_future()
        try:
            await self._lingering
        finally:
            self._lingering = None

    def _signalled(self, sig: signal.Signals) -> None:
        if self.left_by is not None:
            return  # cleaning up on the way out: let it finish
        if self._lingering is not None and not self._lingering.done():
            self._lingering.set_result(None)  # not a cancel: the command ends as the job did
            return
        if sig == signal.SIGINT and not self.stopping and self._on_stop is not None:
            self.stopping = True
            self._say(self._on_stop())
            return
        self.left_by = sig
        if self._task is not None:
            self._task.cancel()
        # After the cancel: a terminal gone with SIGHUP cannot be written to.
        with contextlib.suppress(OSError):
            self._say(f"{sig.name}: leaving now; {self._leaving}")
