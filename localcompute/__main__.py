"""The `localcompute` command: `python -m localcompute` and the console script alike.

The CLI is imported inside main(), not above it: a Ctrl-C in the second or so that
Python spends importing it ends the command with 130 and one line, never with a
traceback. Once a command runs, it answers signals itself (`run`: cli/interrupts.py).

Two costs of a short command are Python's, not the command's (bench/run_overhead.py):
the cyclic garbage collector's passes over the some 60,000 objects that loading makes,
and the interpreter's tear-down at exit, which frees every one of them again. The
collector is off while the CLI loads, and what loaded is then frozen out of every later
pass (gc.freeze: modules live as long as the process); `run` does the same for its
engine's modules (cli/run_local.py). The tear-down is skipped once the command is done
and no thread of it is left.
"""

from __future__ import annotations

import atexit
import gc
import os
import signal
import sys
import threading

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it


class _HeldInterrupt:
    """A Ctrl-C while the CLI loads, held until it has. Raised in the middle of an import,
    KeyboardInterrupt can come out of a library as another error (pydantic-core, building
    a model's validator, turns it into a SchemaError: exit 1 and its message) or not at
    all, and the command then runs on as if never interrupted (seen under load in CI)."""

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, signum: int, frame: object) -> None:
        self.seen = True


def main() -> int:
    held = _HeldInterrupt()
    # Only a Ctrl-C that would raise is held: one ignored (a background job) stays so.
    holding = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    try:
        gc.disable()  # about 0.09 s of collections during `localcompute run`, 2 ms without
        if holding:
            signal.signal(signal.SIGINT, held)
        try:
            from localcompute.cli import main as command
        finally:
            if holding:
                signal.signal(signal.SIGINT, signal.default_int_handler)
            gc.freeze()
            gc.enable()
        if held.seen:
            raise KeyboardInterrupt
        code = command()
    except KeyboardInterrupt:
        # A second interrupt on the way out (a pending one, or Ctrl-C pressed twice) must
        # not turn the exit into death by SIGINT (-2): once seen under load in CI.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("localcompute: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    return leave(code)


def leave(code: int) -> int:
    """Exit with `code` now, as the interpreter would, without its tear-down.

    What a normal exit does that anyone can see is done first: the exit handlers run
    and stdout and stderr are flushed. Only freeing the modules and objects one by one
    is skipped: 0.2-0.3 s after `localcompute run` on the 2-core machine, as long as
    the job itself took. Where a thread still runs, or a flush fails, `code` is
    returned and the interpreter exits as it always did (it waits for the thread).
    """
    main_thread = threading.main_thread()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not main_thread):
        return code
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command is over: a late Ctrl-C too
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # closed under us: the interpreter says so, as before
        return code
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
