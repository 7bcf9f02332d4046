"""Fetch a compute job's inputs and algorithm into the job's data folder.

Runs as a program inside the helper container, so it uses the standard library only and
imports nothing from localcompute but its sibling helper modules (every helper module is
copied into the image; contract.py holds what the engine reads of it). Its stdout
becomes configure.log, which the consumer can read: it therefore never prints an
input's URL or path, which belong to the dataset owner.

Exit codes follow the ocean.py contract (contract.py): 31 when data provisioning fails
(including any unexpected error), 32 when algorithm provisioning fails, 0 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import importlib
import json
import os
import socket
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

if __package__:  # imported as part of localcompute (the engine, the tests)
    from localcompute.helper.contract import (
        EXIT_ALGORITHM_FAILED,
        EXIT_DATA_FAILED,
        EXIT_DISK_FULL,
        EXIT_OK,
        FETCH_STARTED,
        SOURCES_PREFIX,
        STAGE_TOKEN_VAR,
        STAGE_URL_VAR,
        digest_line,
    )
    from localcompute.helper.document import (
        DEFAULT_CONNECT_TIMEOUT,
        DEFAULT_IDLE_TIMEOUT,
        FetchAlgorithm,
        FetchDocument,
        FetchError,
        FetchFile,
        FetchInput,
        Timeouts,
        parse_spec,
    )
else:  # run as a program in the helper image, beside the other helper modules
    from contract import (  # type: ignore[import-not-found,no-redef]
        EXIT_ALGORITHM_FAILED,
        EXIT_DATA_FAILED,
        EXIT_DISK_FULL,
        EXIT_OK,
        FETCH_STARTED,
        SOURCES_PREFIX,
        STAGE_TOKEN_VAR,
        STAGE_URL_VAR,
        digest_line,
    )
    from document import (  # type: ignore[import-not-found,no-redef]
        DEFAULT_CONNECT_TIMEOUT,
        DEFAULT_IDLE_TIMEOUT,
        FetchAlgorithm,
        FetchDocument,
        FetchError,
        FetchFile,
        FetchInput,
        Timeouts,
        parse_spec,
    )

# The errors a full disk quota gives: a full file system (a loop image), a project quota.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskState:
    """Whether any write of this run hit the job's disk quota."""

    full = False


# A read a loop turn: 1 MiB, so that a large download costs few turns of Python (at 64
# KiB, 8,192 of them for 512 MiB) while its memory stays small.
CHUNK_SIZE = 1024 * 1024
# Chunks read ahead of the hashing and writing of a large copy: its memory stays at a
# few MiB whatever the file's size.
OVERLAP_CHUNKS = 4
DATA_SUBDIRS = ("inputs", "transformations", "ddos", "outputs", "logs")
# Inputs must be readable by the algorithm, whatever user its image runs as;
# mkstemp would otherwise leave them 0o600.
INPUT_MODE = 0o644
ALGORITHM_MODE = 0o755


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


def log(message: str) -> None:
    """One plain line, flushed at once so the log is complete even if the container is killed."""
    print(message, flush=True)


def _httpget() -> Any:
    """The HTTP client, imported when first needed: a job whose inputs are all local
    files (mounted) downloads nothing, and http.client and ssl are a part of its start."""
    if __package__:
        return importlib.import_module(f"{__package__}.httpget")
    return importlib.import_module("httpget")


# --- spec ------------------------------------------------------------------------------------


def load_spec(path: Path, timeouts: Timeouts | None = None) -> FetchDocument:
    """The spec from `path`, or from the server where the spec is not on this node."""
    server = stage_server()
    if server is not None and not path.exists():
        url, headers = server
        connection, response = _httpget().open_response(
            url + "/fetch.json",
            timeouts or Timeouts(DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT),
            headers,
        )
        with contextlib.closing(connection):
            return parse_spec(json.loads(response.read()))
    with path.open(encoding="utf-8") as handle:
        return parse_spec(json.load(handle))


def stage_server() -> tuple[str, dict[str, str]] | None:
    """The server's URL for this stage and the header that opens it; None on the server's
    own host, where the spec and the local files are mounted."""
    url = os.environ.get(STAGE_URL_VAR)
    if not url:
        return None
    return url.rstrip("/"), {"Authorization": "Bearer " + os.environ.get(STAGE_TOKEN_VAR, "")}


# --- errors ----------------------------------------------------------------------------------


def describe_error(exc: BaseException) -> str:
    """Say why a transfer failed in words that cannot leak its source.

    OSError's text includes the file name, and some ssl and http.client errors carry
    the host or the URL, so only parts known to be safe are used.
    """
    for cause in (exc, exc.__cause__):
        if isinstance(cause, OSError) and cause.errno in DISK_FULL_ERRNOS:
            DiskState.full = True
    if isinstance(exc, FetchError):
        return str(exc)
    # ssl and http.client are loaded only by a run that downloads (httpget): in a run that
    # never did, no error can be theirs.
    ssl, http = sys.modules.get("ssl"), sys.modules.get("http.client")
    if ssl is not None and isinstance(exc, ssl.SSLError):
        return f"TLS error ({exc.reason or type(exc).__name__})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return "host name could not be resolved"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    if http is not None and isinstance(exc, http.IncompleteRead):
        return "connection closed before the whole body arrived"
    if http is not None and isinstance(exc, http.HTTPException):
        return f"HTTP protocol error ({type(exc).__name__})"
    return f"unexpected {type(exc).__name__}"


# --- writing files ---------------------------------------------------------------------------


class Written(NamedTuple):
    """A file as written: its size and its sha256 (hex), measured on the way in."""

    size: int
    sha256: str


class _Digesting:
    """A writer that hashes what passes through it, so a file is never read twice."""

    def __init__(self, out: Writable) -> None:
        self._out = out
        self.digest = hashlib.sha256()

    def write(self, data: bytes, /) -> int:
        self.digest.update(data)
        return self._out.write(data)


def write_atomically(dest: Path, fill: Callable[[Writable], int], mode: int) -> Written:
    """Write through a temporary name in dest's folder, then rename it into place.

    A failed or interrupted transfer thus never leaves a partial file under the final
    name, where the algorithm would take it for a complete one. Returns its size and
    sha256 (what the engine's receipt names the file by).
    """
    fd, temp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            digesting = _Digesting(out)
            size = fill(digesting)
        os.chmod(temp_name, mode)
        os.replace(temp_name, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    return Written(size, digesting.digest.hexdigest())


def copy_stream(source: Readable, out: Writable) -> int:
    first = source.read(CHUNK_SIZE)
    if len(first) == CHUNK_SIZE:
        return _copy_overlapped(source, out, first)
    # Most inputs and every algorithm fit in one read: no second thread for them.
    size, chunk = 0, first
    while chunk:
        out.write(chunk)
        size += len(chunk)
        chunk = source.read(CHUNK_SIZE)
    return size


def _copy_overlapped(source: Readable, out: Writable, first: bytes) -> int:
    """A large copy with its reads on this thread and its sha256 and writes on another,
    at most OVERLAP_CHUNKS behind: the socket's reads, the hashing and the writes each
    let go of the GIL, so a download no longer waits for the hashing of what came
    before it (for 512 MiB, about 0.4 s on these cores). A write's error (a full disk
    quota) ends the copy with that error, as it would have without the thread."""
    import queue  # only where a copy is this large: every fetch would pay its import
    import threading

    chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=OVERLAP_CHUNKS)
    failed: list[BaseException] = []

    def write_all() -> None:
        try:
            while (chunk := chunks.get()) is not None:
                out.write(chunk)
        except BaseException as exc:
            failed.append(exc)
            while chunks.get() is not None:  # the reader must never block on a full queue
                pass

    writer = threading.Thread(target=write_all, name="fetch-writer", daemon=True)
    writer.start()
    size, chunk = 0, first
    try:
        while chunk and not failed:
            chunks.put(chunk)
            size += len(chunk)
            chunk = source.read(CHUNK_SIZE)
    finally:
        chunks.put(None)
        writer.join()
    if failed:
        raise failed[0]
    return size


def write_json(dest: Path, value: Any) -> Written:
    data = json.dumps(value).encode("utf-8")
    return write_atomically(dest, lambda out: out.write(data), INPUT_MODE)


def copy_local(path: str, dest: Path, mode: int, timeouts: Timeouts | None = None) -> Written:
    server = stage_server()
    if server is not None and path.startswith(SOURCES_PREFIX) and not os.path.exists(path):
        # The dataset owner's file is on the server's disk, not this node's.
        url, headers = server
        number = path.removeprefix(SOURCES_PREFIX)
        waits = timeouts or Timeouts(DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT)
        return download(f"{url}/sources/{number}", dest, waits, mode, headers)
    with open(path, "rb") as source:
        return write_atomically(dest, lambda out: copy_stream(source, out), mode)


# --- downloading -----------------------------------------------------------------------------


def download(
    url: str, dest: Path, timeouts: Timeouts, mode: int, headers: dict[str, str] | None = None
) -> Written:
    connection, response = _httpget().open_response(url, timeouts, headers)
    with contextlib.closing(connection):
        try:
            return write_atomically(dest, lambda out: copy_stream(response, out), mode)
        except TimeoutError as exc:
            raise FetchError(f"no data received for {timeouts.idle:g} s") from exc


# --- inputs ----------------------------------------------------------------------------------


def safe_folder(name: str) -> str:
    """Refuse a folder name that would land outside DIR/inputs or DIR/ddos.

    The server builds these names, so this is defence in depth against a DID-derived
    name such as "..", not an expected failure.
    """
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise FetchError("invalid folder name")
    return name


def fetch_inputs(inputs: tuple[FetchInput, ...], data_dir: Path, timeouts: Timeouts) -> int:
    """Fetch every input, even after a failure, so the log lists them all; returns failures."""
    return sum(fetch_input(index, item, data_dir, timeouts) for index, item in enumerate(inputs))


def fetch_input(index: int, item: FetchInput, data_dir: Path, timeouts: Timeouts) -> int:
    label = f"input {index} ({item.did})"
    try:
        folder = safe_folder(item.folder)
        (data_dir / "inputs" / folder).mkdir(exist_ok=True)
    except (FetchError, OSError) as exc:
        log(f"{label}: {describe_error(exc)}")
        return 1
    failures = 0
    for number, source in enumerate(item.files):
        dest = data_dir / "inputs" / folder / str(number)
        if not fetch_input_file(f"{label} file {number}", source, dest, timeouts):
            failures += 1
    if item.ddo is not None and not write_ddo(label, item.ddo, data_dir / "ddos" / folder):
        failures += 1
    return failures


def fetch_input_file(label: str, source: FetchFile, dest: Path, timeouts: Timeouts) -> bool:
    """Fetch one dataset file; the log says why it failed but never where it came from."""
    action = "download" if source.url is not None else "copy"
    try:
        written = fetch_source(source, dest, timeouts)
    except Exception as exc:
        log(f"{label}: {action} failed: {describe_error(exc)}")
        return False
    log(digest_line(label, written.size, written.sha256))
    return True


def fetch_source(source: FetchFile, dest: Path, timeouts: Timeouts) -> Written:
    if source.url is not None and source.path is None:
        return download(source.url, dest, timeouts, INPUT_MODE)
    if source.path is not None and source.url is None:
        return copy_local(source.path, dest, INPUT_MODE, timeouts)
    raise FetchError("a file needs exactly one of url or path")


def write_ddo(label: str, ddo: Any, dest: Path) -> bool:
    try:
        write_json(dest, ddo)
    except OSError as exc:
        log(f"{label}: writing its ddo failed: {describe_error(exc)}")
        return False
    return True


def write_custom_data(value: Any, data_dir: Path) -> bool:
    try:
        written = write_json(data_dir / "inputs" / "algoCustomData.json", value)
    except OSError as exc:
        log(f"algoCustomData.json: write failed: {describe_error(exc)}")
        return False
    log(digest_line("algoCustomData.json", written.size, written.sha256))
    return True


# --- algorithm -------------------------------------------------------------------------------


def fetch_algorithm(algorithm: FetchAlgorithm, data_dir: Path, timeouts: Timeouts) -> bool:
    label = f"algorithm ({algorithm.did})" if algorithm.did else "algorithm"
    try:
        written, origin = provide_algorithm(
            algorithm, data_dir / "transformations" / "algorithm", timeouts
        )
        if algorithm.ddo is not None and algorithm.folder:
            write_json(data_dir / "ddos" / safe_folder(algorithm.folder), algorithm.ddo)
    except Exception as exc:
        log(f"{label}: {describe_error(exc)}")
        return False
    log(digest_line(label, written.size, written.sha256) + f", from {origin}")
    return True


def provide_algorithm(
    algorithm: FetchAlgorithm, dest: Path, timeouts: Timeouts
) -> tuple[Written, str]:
    """Write the algorithm from the first usable source; returns its size and origin."""
    rawcode = algorithm.rawcode
    # Any raw code that is not blank runs, however short ("true", "ls /data"); a blank
    # placeholder such as "" never shadows a real url or path.
    if isinstance(rawcode, str) and rawcode.strip():
        data = rawcode.encode("utf-8")
        return write_atomically(dest, lambda out: out.write(data), ALGORITHM_MODE), "raw code"
    if algorithm.url is not None:
        # Unlike an input's, the algorithm's URL is the consumer's own, so it may be shown.
        try:
            return download(algorithm.url, dest, timeouts, ALGORITHM_MODE), algorithm.url
        except Exception as exc:
            raise FetchError(
                f"download from {algorithm.url} failed: {describe_error(exc)}"
            ) from exc
    if algorithm.path is not None:
        try:
            return copy_local(algorithm.path, dest, ALGORITHM_MODE, timeouts), "a local file"
        except Exception as exc:
            raise FetchError(f"copy failed: {describe_error(exc)}") from exc
    raise FetchError("no algorithm source: no raw code, url or path")


# --- main ------------------------------------------------------------------------------------


def run(spec: FetchDocument, data_dir: Path) -> int:
    for name in DATA_SUBDIRS:
        (data_dir / name).mkdir(parents=True, exist_ok=True)
    file_count = sum(len(item.files) for item in spec.inputs)
    log(f"{FETCH_STARTED} {len(spec.inputs)} inputs, {file_count} files")
    failures = fetch_inputs(spec.inputs, data_dir, spec.timeouts)
    if failures and DiskState.full:
        log(f"fetch finished: inputs failed ({failures} failures): the job's disk is full")
        return EXIT_DISK_FULL
    if failures:
        log(f"fetch finished: inputs failed ({failures} failures), algorithm skipped")
        return EXIT_DATA_FAILED
    if spec.has_algocustomdata and not write_custom_data(spec.algocustomdata, data_dir):
        log("fetch finished: inputs failed (algoCustomData.json), algorithm skipped")
        return EXIT_DATA_FAILED
    if not fetch_algorithm(spec.algorithm, data_dir, spec.timeouts):
        log("fetch finished: inputs ok, algorithm failed")
        return EXIT_ALGORITHM_FAILED
    log("fetch finished: inputs ok, algorithm ok")
    return EXIT_OK


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Fetch a compute job's inputs and algorithm.")
    parser.add_argument("spec", type=Path, help="JSON file describing the inputs and algorithm")
    parser.add_argument(
        "--data", type=Path, default=Path("/data"), help="job data folder (default: /data)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(load_spec(args.spec), args.data)
    except Exception:
        # Failures of single files are handled (and described safely) where they happen;
        # what lands here is a bug or a broken spec, which the traceback helps to find.
        log("fetch failed with an unexpected error:")
        log(traceback.format_exc().rstrip())
        log("fetch finished: unexpected error")
        return EXIT_DATA_FAILED


if __name__ == "__main__":
    sys.exit(main())
