"""The exit codes of every `localcompute` command, and the one place an error becomes one.

`run` exits with its algorithm's own code when the algorithm ran to its end; every
other way a command ends is one of these, whichever command and path it took (see
the README's table). Codes above 63 follow sysexits.h and the shell's conventions.
"""

from __future__ import annotations

import os
import sys

from localcompute.core.errors import (
    AlgorithmRefusedError,
    ConfigError,
    DockerUnavailableError,
    ImageNotFoundError,
    InputRefusedError,
    LocalComputeError,
    NoServerError,
    RemoteError,
)

EXIT_OK = 0
EXIT_FAILED = 1  # refused or not possible: no such job, deleted, the server said no
EXIT_USAGE = 2  # a bad option, file or configuration, a port or data folder in use
EXIT_INPUT_UNAVAILABLE = 65  # an input could not be had: unknown DID, fetch failed (EX_DATAERR)
EXIT_ALGORITHM_UNAVAILABLE = 66  # the algorithm or its image could not be provisioned or is refused
EXIT_UNAVAILABLE = 69  # no server, or no Docker engine, answers (EX_UNAVAILABLE)
EXIT_SYSTEM = 70  # localcompute failed under the job, or the server failed (EX_SOFTWARE)
EXIT_TIMEOUT = 124  # the algorithm ran out of time, as timeout(1)
EXIT_STOPPED = 130  # stopped with Ctrl-C
EXIT_OOM = 137  # killed for memory, as the kernel's SIGKILL
# A signal that ends a command at once (a second Ctrl-C, SIGTERM, SIGHUP) gives 128 + its
# number, as a shell reports it: 130, 143, 129 (localcompute.cli.interrupts).
EXIT_OUTPUT_CLOSED = 141  # stdout was closed (`| head`): what a shell reports for SIGPIPE


def failures() -> tuple[type[BaseException], ...]:
    """What a command lets through to `code_for`: everything else is a bug, with its
    traceback. aiohttp's errors only where a command spoke HTTP (it loaded aiohttp):
    `localcompute run` of a local job does not, and does not pay for the import."""
    aiohttp = sys.modules.get("aiohttp")
    own = (LocalComputeError, KeyError, OSError)
    return own if aiohttp is None else (*own, aiohttp.ClientError)


def _connection_refused(error: BaseException) -> bool:
    aiohttp = sys.modules.get("aiohttp")
    return aiohttp is not None and isinstance(error, aiohttp.ClientConnectionError)


def code_for(error: BaseException) -> int:
    """The exit code of a command that ended with `error`."""
    if isinstance(error, ConfigError):
        return EXIT_USAGE
    if isinstance(error, InputRefusedError):
        return EXIT_INPUT_UNAVAILABLE
    if isinstance(error, AlgorithmRefusedError | ImageNotFoundError):
        return EXIT_ALGORITHM_UNAVAILABLE
    if isinstance(error, DockerUnavailableError | NoServerError) or _connection_refused(error):
        return EXIT_UNAVAILABLE
    if isinstance(error, RemoteError) and error.status == 503:
        return EXIT_UNAVAILABLE  # the server's Docker engine is away
    if isinstance(error, RemoteError) and error.status >= 500:
        return EXIT_SYSTEM
    return EXIT_FAILED


def message_of(error: BaseException) -> str:
    if isinstance(error, LocalComputeError):
        return error.message
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    return str(error) or type(error).__name__


def fail(command: str, error: BaseException) -> int:
    """One line on stderr that names the cause; the code for it."""
    print(f"localcompute {command}: {message_of(error)}", file=sys.stderr)
    return code_for(error)


def output_closed() -> int:
    """stdout was closed under us (`localcompute jobs list | head`): end quietly, as Unix
    tools do. What is still buffered goes to /dev/null, so that the interpreter's own
    flush at exit has nothing to complain about."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_OUTPUT_CLOSED
