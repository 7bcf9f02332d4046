"""Fetch a compute job's inputs and algorithm into the job's data folder.

Runs as a plain script inside the helper container, so it uses the standard library
only and imports nothing else from localcompute (only this file is copied into the
image). Its stdout becomes configure.log, which the consumer can read: it therefore
never prints an input's URL or path, which belong to the dataset owner.

Exit codes follow the ocean.py contract: 31 when data provisioning fails (including
any unexpected error), 32 when algorithm provisioning fails, 0 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import http.client
import json
import os
import socket
import ssl
import sys
import tempfile
import traceback
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

EXIT_OK = 0
EXIT_DATA_FAILED = 31
EXIT_ALGORITHM_FAILED = 32
EXIT_DISK_FULL = 33  # a write failed because the job's disk quota is reached
# The errors a full disk quota gives: a full file system (a loop image), a project quota.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskState:
    """Whether any write of this run hit the job's disk quota."""

    full = False


CHUNK_SIZE = 64 * 1024
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DATA_SUBDIRS = ("inputs", "transformations", "ddos", "outputs", "logs")
# Inputs must be readable by the algorithm, whatever user its image runs as;
# mkstemp would otherwise leave them 0o600.
INPUT_MODE = 0o644
ALGORITHM_MODE = 0o755
DEFAULT_CONNECT_TIMEOUT = 30.0
DEFAULT_IDLE_TIMEOUT = 120.0
USER_AGENT = "localcompute-fetch/1"
# Where the job's node shares no disk with the server (Swarm): the server's address for
# this job's fetch, and the token that opens it. The spec and the local files come from it.
STAGE_URL_VAR = "LOCALCOMPUTE_STAGE_URL"
STAGE_TOKEN_VAR = "LOCALCOMPUTE_STAGE_TOKEN"
SOURCES_PREFIX = "/sources/"
# Characters left as they are when a request target is quoted: everything that is
# legal in a URL, so only spaces, controls and non-ASCII get percent-encoded.
URL_SAFE = "!#$%&'()*+,/:;=?@[]~"


class FetchError(Exception):
    """A failure whose message is safe for the consumer's log: never an input's URL or path."""


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


@dataclass(frozen=True)
class Timeouts:
    """connect bounds connecting (and the TLS handshake); idle bounds each wait for data."""

    connect: float
    idle: float


@dataclass(frozen=True)
class FileSource:
    url: str | None
    path: str | None


@dataclass(frozen=True)
class InputSpec:
    did: str
    folder: str
    files: tuple[FileSource, ...]
    ddo: Any


@dataclass(frozen=True)
class AlgorithmSpec:
    did: str
    folder: str
    rawcode: Any
    url: str | None
    path: str | None
    ddo: Any


@dataclass(frozen=True)
class JobSpec:
    inputs: tuple[InputSpec, ...]
    algorithm: AlgorithmSpec
    algocustomdata: Any
    has_algocustomdata: bool
    timeouts: Timeouts


def log(message: str) -> None:
    """One plain line, flushed at once so the log is complete even if the container is killed."""
    print(message, flush=True)


# --- spec ------------------------------------------------------------------------------------


def load_spec(path: Path, timeouts: Timeouts | None = None) -> JobSpec:
    """The spec from `path`, or from the server where the spec is not on this node."""
    server = stage_server()
    if server is not None and not path.exists():
        url, headers = server
        connection, response = open_response(
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


def parse_spec(raw: Any) -> JobSpec:
    """Validate the spec's shape; messages name keys only, never values (they may be secret)."""
    spec = _object(raw, "spec")
    inputs = tuple(_parse_input(item) for item in _list(spec.get("inputs"), "inputs"))
    return JobSpec(
        inputs=inputs,
        # A missing algorithm is not a malformed spec but an algorithm failure (32),
        # found when there turns out to be nothing to fetch.
        algorithm=_parse_algorithm(_object(spec.get("algorithm") or {}, "algorithm")),
        algocustomdata=spec.get("algocustomdata"),
        has_algocustomdata=spec.get("has_algocustomdata") is True,
        timeouts=Timeouts(
            connect=_seconds(spec, "connect_timeout", DEFAULT_CONNECT_TIMEOUT),
            idle=_seconds(spec, "idle_timeout", DEFAULT_IDLE_TIMEOUT),
        ),
    )


def _parse_input(raw: Any) -> InputSpec:
    item = _object(raw, "input")
    files = tuple(_parse_file(entry) for entry in _list(item.get("files"), "input files"))
    return InputSpec(
        did=_text(item, "did"), folder=_text(item, "folder"), files=files, ddo=item.get("ddo")
    )


def _parse_file(raw: Any) -> FileSource:
    entry = _object(raw, "input file")
    return FileSource(url=_optional_text(entry, "url"), path=_optional_text(entry, "path"))


def _parse_algorithm(item: dict[str, Any]) -> AlgorithmSpec:
    return AlgorithmSpec(
        did=_text(item, "did"),
        folder=_text(item, "folder"),
        rawcode=item.get("rawcode"),
        url=_optional_text(item, "url"),
        path=_optional_text(item, "path"),
        ddo=item.get("ddo"),
    )


def _object(raw: Any, what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError(f"{what} must be a JSON object")
    return raw


def _list(raw: Any, what: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError(f"{what} must be a JSON array")
    return raw


def _text(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


def _optional_text(item: dict[str, Any], key: str) -> str | None:
    return _text(item, key) or None


def _seconds(spec: dict[str, Any], key: str, default: float) -> float:
    value = spec.get(key)
    if value is None:
        return default
    # bool is an int to Python, but true as a timeout is surely a bug upstream.
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{key} must be a positive number")
    return float(value)


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
    if isinstance(exc, ssl.SSLError):
        return f"TLS error ({exc.reason or type(exc).__name__})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return "host name could not be resolved"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    if isinstance(exc, http.client.IncompleteRead):
        return "connection closed before the whole body arrived"
    if isinstance(exc, http.client.HTTPException):
        return f"HTTP protocol error ({type(exc).__name__})"
    return f"unexpected {type(exc).__name__}"


# --- writing files ---------------------------------------------------------------------------


def write_atomically(dest: Path, fill: Callable[[Writable], int], mode: int) -> int:
    """Write through a temporary name in dest's folder, then rename it into place.

    A failed or interrupted transfer thus never leaves a partial file under the final
    name, where the algorithm would take it for a complete one. Returns the size.
    """
    fd, temp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            size = fill(out)
        os.chmod(temp_name, mode)
        os.replace(temp_name, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    return size


def copy_stream(source: Readable, out: Writable) -> int:
    size = 0
    while chunk := source.read(CHUNK_SIZE):
        out.write(chunk)
        size += len(chunk)
    return size


def write_json(dest: Path, value: Any) -> int:
    data = json.dumps(value).encode("utf-8")
    return write_atomically(dest, lambda out: out.write(data), INPUT_MODE)


def copy_local(path: str, dest: Path, mode: int, timeouts: Timeouts | None = None) -> int:
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
) -> int:
    connection, response = open_response(url, timeouts, headers)
    with contextlib.closing(connection):
        try:
            return write_atomically(dest, lambda out: copy_stream(response, out), mode)
        except TimeoutError as exc:
            raise FetchError(f"no data received for {timeouts.idle:g} s") from exc


def open_response(
    url: str, timeouts: Timeouts, headers: dict[str, str] | None = None
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """GET url, following up to MAX_REDIRECTS redirects; the caller closes the connection.
    `headers` (the server's token) go to the first host only, never where it redirects."""
    for _ in range(MAX_REDIRECTS + 1):
        parts = parse_url(url)
        connection = connect(parts, timeouts)
        try:
            response = send_get(connection, parts, timeouts, headers)
            headers = None
            next_url = redirect_target(url, response)
        except BaseException:
            connection.close()
            raise
        if next_url is None:
            return connection, response
        connection.close()
        url = next_url
    raise FetchError(f"more than {MAX_REDIRECTS} redirects")


def parse_url(url: str) -> urllib.parse.SplitResult:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchError("only http and https URLs are supported")
    if not parts.hostname:
        raise FetchError("URL has no host")
    try:
        _ = parts.port  # parsed lazily: raises ValueError, naming the URL, for a bad port
    except ValueError as exc:
        raise FetchError("URL has an invalid port") from exc
    return parts


def connect(parts: urllib.parse.SplitResult, timeouts: Timeouts) -> http.client.HTTPConnection:
    """Connect within the connect timeout, then switch the socket to the idle timeout.

    A socket timeout bounds each wait for data, not the whole transfer (unlike a single
    urllib timeout would in effect), so a slow download that keeps making progress
    never fails, while one that stalls for longer than idle does.
    """
    host = parts.hostname or ""
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context()
        connection = http.client.HTTPSConnection(
            host, parts.port, timeout=timeouts.connect, context=context
        )
    else:
        connection = http.client.HTTPConnection(host, parts.port, timeout=timeouts.connect)
    try:
        connection.connect()
        connection.sock.settimeout(timeouts.idle)
    except TimeoutError as exc:
        connection.close()
        raise FetchError(f"connect timed out after {timeouts.connect:g} s") from exc
    except BaseException:
        connection.close()
        raise
    return connection


def send_get(
    connection: http.client.HTTPConnection,
    parts: urllib.parse.SplitResult,
    timeouts: Timeouts,
    headers: dict[str, str] | None = None,
) -> http.client.HTTPResponse:
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    try:
        connection.request(
            "GET",
            urllib.parse.quote(target, safe=URL_SAFE),
            headers={"User-Agent": USER_AGENT, **(headers or {})},
        )
        return connection.getresponse()
    except TimeoutError as exc:
        raise FetchError(f"no response within {timeouts.idle:g} s") from exc


def redirect_target(url: str, response: http.client.HTTPResponse) -> str | None:
    """The URL a redirect points to, None for a success; raises for any other status."""
    if response.status in REDIRECT_STATUSES:
        location = response.getheader("Location")
        if not location:
            raise FetchError(f"HTTP {response.status} redirect without a Location")
        # urljoin resolves a relative Location against the URL that answered.
        return urllib.parse.urljoin(url, location)
    if 200 <= response.status < 300:
        return None
    raise FetchError(f"HTTP {response.status}")


# --- inputs ----------------------------------------------------------------------------------


def safe_folder(name: str) -> str:
    """Refuse a folder name that would land outside DIR/inputs or DIR/ddos.

    The server builds these names, so this is defence in depth against a DID-derived
    name such as "..", not an expected failure.
    """
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise FetchError("invalid folder name")
    return name


def fetch_inputs(inputs: tuple[InputSpec, ...], data_dir: Path, timeouts: Timeouts) -> int:
    """Fetch every input, even after a failure, so the log lists them all; returns failures."""
    return sum(fetch_input(index, item, data_dir, timeouts) for index, item in enumerate(inputs))


def fetch_input(index: int, item: InputSpec, data_dir: Path, timeouts: Timeouts) -> int:
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


def fetch_input_file(label: str, source: FileSource, dest: Path, timeouts: Timeouts) -> bool:
    """Fetch one dataset file; the log says why it failed but never where it came from."""
    action = "download" if source.url is not None else "copy"
    try:
        size = fetch_source(source, dest, timeouts)
    except Exception as exc:
        log(f"{label}: {action} failed: {describe_error(exc)}")
        return False
    log(f"{label}: {size} bytes")
    return True


def fetch_source(source: FileSource, dest: Path, timeouts: Timeouts) -> int:
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
        size = write_json(data_dir / "inputs" / "algoCustomData.json", value)
    except OSError as exc:
        log(f"algoCustomData.json: write failed: {describe_error(exc)}")
        return False
    log(f"algoCustomData.json: {size} bytes")
    return True


# --- algorithm -------------------------------------------------------------------------------


def fetch_algorithm(algorithm: AlgorithmSpec, data_dir: Path, timeouts: Timeouts) -> bool:
    label = f"algorithm ({algorithm.did})" if algorithm.did else "algorithm"
    try:
        size, origin = provide_algorithm(
            algorithm, data_dir / "transformations" / "algorithm", timeouts
        )
        if algorithm.ddo is not None and algorithm.folder:
            write_json(data_dir / "ddos" / safe_folder(algorithm.folder), algorithm.ddo)
    except Exception as exc:
        log(f"{label}: {describe_error(exc)}")
        return False
    log(f"{label}: {size} bytes from {origin}")
    return True


def provide_algorithm(algorithm: AlgorithmSpec, dest: Path, timeouts: Timeouts) -> tuple[int, str]:
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


def run(spec: JobSpec, data_dir: Path) -> int:
    for name in DATA_SUBDIRS:
        (data_dir / name).mkdir(parents=True, exist_ok=True)
    file_count = sum(len(item.files) for item in spec.inputs)
    log(f"fetch started: {len(spec.inputs)} inputs, {file_count} files")
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
