"""fetch.py against a real HTTP server on 127.0.0.1: file tree, exit codes, timeouts, secrecy."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest

from localcompute.helper import fetch

CSV_BODY = b"a,b\n1,2\n"
ALGO_BODY = b"print('algorithm from url')\n"
BIG_CHUNK = 32 * 1024
BIG_CHUNKS = 24  # 768 KiB in all
BIG_PAUSE = 0.025  # 24 pauses of 0.025 s: 0.6 s in all, more than twice IDLE, never near it
STALL_SECONDS = 5.0
IDLE = 0.25
RAWCODE = "print('hello from raw code')\n"


class Server(ThreadingHTTPServer):
    # Handlers that wait do so on this event, so teardown never waits on a sleeping thread.
    stop: threading.Event


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        routes = {
            "/a.csv": lambda: self.send_body(CSV_BODY),
            "/algo.py": lambda: self.send_body(ALGO_BODY),
            "/missing": lambda: self.send_body(b"not found", status=404),
            "/redirect": lambda: self.redirect("/a.csv"),
            "/redirect-abs": lambda: self.redirect(f"http://127.0.0.1:{self.server_port}/a.csv"),
            "/loop": lambda: self.redirect("/loop"),
            "/stall": self.stall,
            "/slow-big": self.slow_big,
        }
        route = routes.get(self.path)
        try:
            if route is None:
                self.send_body(b"no such route", status=404)
            else:
                route()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as the timeout tests intend

    @property
    def server_port(self) -> int:
        return cast(Server, self.server).server_port

    def send_body(self, body: bytes, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def stall(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        self.wfile.write(b"x" * 10)
        self.wfile.flush()
        cast(Server, self.server).stop.wait(STALL_SECONDS)

    def slow_big(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(BIG_CHUNK * BIG_CHUNKS))
        self.end_headers()
        for index in range(BIG_CHUNKS):
            self.wfile.write(bytes([index]) * BIG_CHUNK)
            self.wfile.flush()
            if cast(Server, self.server).stop.wait(BIG_PAUSE):
                return

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def base_url() -> Iterator[str]:
    server = Server(("127.0.0.1", 0), Handler)
    server.stop = threading.Event()
    # shutdown() waits for the serving loop's next poll: 10 ms, not 50, for each test.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def make_spec(
    tmp_path: Path,
    inputs: list[dict[str, Any]],
    algorithm: dict[str, Any] | None = None,
    **extra: Any,
) -> str:
    spec: dict[str, Any] = {
        "inputs": inputs,
        "algorithm": {
            "did": "did:op:algo1",
            "folder": "algo1",
            "rawcode": RAWCODE,
            "url": None,
            "path": None,
            "ddo": None,
            **(algorithm or {}),
        },
        "algocustomdata": {"x": 1},
        "has_algocustomdata": True,
        "connect_timeout": 5,
        "idle_timeout": 5,
        **extra,
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return str(path)


def one_input(*files: dict[str, Any], ddo: Any = None) -> list[dict[str, Any]]:
    return [{"did": "did:op:abc", "folder": "abc", "files": list(files), "ddo": ddo}]


def tree(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*")}


def run_fetch(spec: str, data: Path) -> int:
    return fetch.main([spec, "--data", str(data)])


EMPTY_DIRS = {"inputs", "transformations", "ddos", "outputs", "logs"}


def test_success_writes_the_exact_tree(
    tmp_path: Path, data: Path, base_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    local = tmp_path / "secret-source" / "local.bin"
    local.parent.mkdir()
    local.write_bytes(b"local bytes")
    ddo = {"id": "did:op:abc", "nested": {"k": [1, 2]}}
    spec = make_spec(
        tmp_path,
        one_input({"url": f"{base_url}/a.csv"}, {"path": str(local)}, ddo=ddo),
        algorithm={"ddo": {"id": "did:op:algo1"}},
    )

    assert run_fetch(spec, data) == 0

    assert tree(data) == EMPTY_DIRS | {
        "inputs/abc",
        "inputs/abc/0",
        "inputs/abc/1",
        "inputs/algoCustomData.json",
        "transformations/algorithm",
        "ddos/abc",
        "ddos/algo1",
    }
    assert (data / "inputs/abc/0").read_bytes() == CSV_BODY
    assert (data / "inputs/abc/1").read_bytes() == b"local bytes"
    assert json.loads((data / "inputs/algoCustomData.json").read_text()) == {"x": 1}
    assert json.loads((data / "ddos/abc").read_text()) == ddo
    assert json.loads((data / "ddos/algo1").read_text()) == {"id": "did:op:algo1"}
    algorithm = data / "transformations/algorithm"
    assert algorithm.read_text(encoding="utf-8") == RAWCODE
    assert algorithm.stat().st_mode & 0o777 == 0o755
    out = capsys.readouterr().out
    assert base_url not in out
    assert str(local) not in out
    assert "input 0 (did:op:abc) file 0: 8 bytes" in out
    assert "input 0 (did:op:abc) file 1: 11 bytes" in out
    assert out.rstrip().endswith("fetch finished: inputs ok, algorithm ok")


def test_relative_and_absolute_redirects_are_followed(
    tmp_path: Path, data: Path, base_url: str
) -> None:
    spec = make_spec(
        tmp_path, one_input({"url": f"{base_url}/redirect"}, {"url": f"{base_url}/redirect-abs"})
    )

    assert run_fetch(spec, data) == 0

    assert (data / "inputs/abc/0").read_bytes() == CSV_BODY
    assert (data / "inputs/abc/1").read_bytes() == CSV_BODY


def test_redirect_loop_fails(
    tmp_path: Path, data: Path, base_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = make_spec(tmp_path, one_input({"url": f"{base_url}/loop"}))

    assert run_fetch(spec, data) == 31

    assert "download failed: more than 5 redirects" in capsys.readouterr().out


def test_failed_inputs_are_all_logged_and_skip_the_algorithm(
    tmp_path: Path, data: Path, base_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    missing_path = tmp_path / "secret-source" / "absent.bin"
    inputs = [
        *one_input({"url": f"{base_url}/a.csv"}, {"url": f"{base_url}/missing"}),
        {"did": "did:op:def", "folder": "def", "files": [{"path": str(missing_path)}], "ddo": None},
    ]
    spec = make_spec(tmp_path, inputs)

    assert run_fetch(spec, data) == 31

    # The good file is kept; nothing, not even a partial file, exists for the others.
    assert sorted((data / "inputs/abc").iterdir()) == [data / "inputs/abc/0"]
    assert list((data / "inputs/def").iterdir()) == []
    assert not (data / "transformations/algorithm").exists()
    assert not (data / "inputs/algoCustomData.json").exists()
    out = capsys.readouterr().out
    assert "input 0 (did:op:abc) file 1: download failed: HTTP 404" in out
    assert "input 1 (did:op:def) file 0: copy failed: No such file or directory" in out
    assert base_url not in out
    assert "/missing" not in out
    assert "secret-source" not in out
    assert "algorithm skipped" in out


def test_stalled_download_fails_after_the_idle_timeout(
    tmp_path: Path, data: Path, base_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = make_spec(tmp_path, one_input({"url": f"{base_url}/stall"}), idle_timeout=IDLE)

    started = time.monotonic()
    assert run_fetch(spec, data) == 31
    elapsed = time.monotonic() - started

    assert elapsed < STALL_SECONDS / 2
    assert list((data / "inputs/abc").iterdir()) == []
    out = capsys.readouterr().out
    assert "input 0 (did:op:abc) file 0: download failed: no data received for 0.25 s" in out
    assert base_url not in out


def test_slow_but_steady_download_has_no_total_timeout(
    tmp_path: Path, data: Path, base_url: str
) -> None:
    spec = make_spec(tmp_path, one_input({"url": f"{base_url}/slow-big"}), idle_timeout=IDLE)

    started = time.monotonic()
    assert run_fetch(spec, data) == 0
    elapsed = time.monotonic() - started

    assert elapsed > 2 * IDLE
    expected = b"".join(bytes([index]) * BIG_CHUNK for index in range(BIG_CHUNKS))
    assert (data / "inputs/abc/0").read_bytes() == expected
    assert sorted(path.name for path in (data / "inputs/abc").iterdir()) == ["0"]


def test_blank_rawcode_falls_back_to_the_url(
    tmp_path: Path, data: Path, base_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    algo_url = f"{base_url}/algo.py"
    spec = make_spec(
        tmp_path,
        one_input({"url": f"{base_url}/a.csv"}),
        algorithm={"rawcode": " \n\t", "url": algo_url},
    )

    assert run_fetch(spec, data) == 0

    algorithm = data / "transformations/algorithm"
    assert algorithm.read_bytes() == ALGO_BODY
    assert algorithm.stat().st_mode & 0o777 == 0o755
    # The algorithm's URL is the consumer's own, so the log may show it; its digest is
    # what the job's receipt names it by.
    sha = hashlib.sha256(ALGO_BODY).hexdigest()
    assert f"algorithm (did:op:algo1): {len(ALGO_BODY)} bytes, sha256 {sha}, from {algo_url}" in (
        capsys.readouterr().out
    )


@pytest.mark.parametrize("rawcode", ["true", "ls /data", "x"])
def test_short_rawcode_is_the_algorithm(
    tmp_path: Path, data: Path, base_url: str, rawcode: str
) -> None:
    # Ocean's old engine ignored raw code of 10 characters or fewer; here it runs.
    spec = make_spec(
        tmp_path,
        one_input({"url": f"{base_url}/a.csv"}),
        algorithm={"rawcode": rawcode, "url": f"{base_url}/algo.py"},
    )

    assert run_fetch(spec, data) == 0

    assert (data / "transformations/algorithm").read_text() == rawcode


def test_algorithm_is_copied_from_a_local_path(tmp_path: Path, data: Path, base_url: str) -> None:
    source = tmp_path / "algo.sh"
    source.write_text("#!/bin/sh\necho hi\n")
    source.chmod(0o600)
    spec = make_spec(
        tmp_path,
        one_input({"url": f"{base_url}/a.csv"}),
        algorithm={"did": "", "folder": "", "rawcode": None, "path": str(source)},
    )

    assert run_fetch(spec, data) == 0

    algorithm = data / "transformations/algorithm"
    assert algorithm.read_text() == "#!/bin/sh\necho hi\n"
    assert algorithm.stat().st_mode & 0o777 == 0o755
    assert tree(data / "ddos") == set()


def test_missing_algorithm_source_exits_32(
    tmp_path: Path, data: Path, base_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = make_spec(tmp_path, one_input({"url": f"{base_url}/a.csv"}), algorithm={"rawcode": ""})

    assert run_fetch(spec, data) == 32

    assert (data / "inputs/abc/0").read_bytes() == CSV_BODY
    assert not (data / "transformations/algorithm").exists()
    out = capsys.readouterr().out
    assert "no algorithm source" in out
    assert out.rstrip().endswith("fetch finished: inputs ok, algorithm failed")


def test_algorithm_url_404_exits_32(
    tmp_path: Path, data: Path, base_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = make_spec(
        tmp_path,
        one_input({"url": f"{base_url}/a.csv"}),
        algorithm={"rawcode": None, "url": f"{base_url}/missing"},
    )

    assert run_fetch(spec, data) == 32

    assert list((data / "transformations").iterdir()) == []
    assert "HTTP 404" in capsys.readouterr().out


def test_no_custom_data_file_unless_asked(tmp_path: Path, data: Path, base_url: str) -> None:
    spec = make_spec(tmp_path, one_input({"url": f"{base_url}/a.csv"}), has_algocustomdata=False)

    assert run_fetch(spec, data) == 0

    assert not (data / "inputs/algoCustomData.json").exists()


@pytest.mark.parametrize(
    "file",
    [{}, {"url": "http://127.0.0.1:1/x", "path": "/etc/hostname"}, {"url": "ftp://127.0.0.1/x"}],
)
def test_a_file_needs_one_http_url_or_a_path(
    tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str], file: dict[str, Any]
) -> None:
    spec = make_spec(tmp_path, one_input(file))

    assert run_fetch(spec, data) == 31

    out = capsys.readouterr().out
    assert "input 0 (did:op:abc) file 0:" in out
    assert "127.0.0.1" not in out


def test_a_folder_name_cannot_escape_the_inputs_folder(
    tmp_path: Path, data: Path, base_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = [{"did": "did:op:x", "folder": "..", "files": [{"url": f"{base_url}/a.csv"}]}]
    spec = make_spec(tmp_path, inputs)

    assert run_fetch(spec, data) == 31

    assert "input 0 (did:op:x): invalid folder name" in capsys.readouterr().out
    assert tree(data) == EMPTY_DIRS


def test_an_unexpected_error_is_logged_with_a_traceback_and_exits_31(
    tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text("{not json", encoding="utf-8")

    assert run_fetch(str(spec), data) == 31

    out = capsys.readouterr().out
    assert "Traceback (most recent call last)" in out
    assert "JSONDecodeError" in out


def test_runs_as_a_standalone_script(tmp_path: Path, base_url: str) -> None:
    # A copy of the helper modules outside the package, without site-packages (so without
    # localcompute): proves the fetch imports nothing but its siblings.
    script = copy_helper(tmp_path, "fetch.py")
    spec = make_spec(tmp_path, one_input({"url": f"{base_url}/a.csv"}))
    data = tmp_path / "data"

    completed = subprocess.run(
        [sys.executable, *STANDALONE, str(script), spec, "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert (data / "inputs/abc/0").read_bytes() == CSV_BODY
    assert "fetch finished: inputs ok, algorithm ok" in completed.stdout


# Python as the helper image runs it, less everything installed: no environment variables,
# no user or site packages. The program's own folder stays on sys.path (no -I), as in the
# image, where the helper modules sit side by side.
STANDALONE = ("-E", "-s", "-S")


def copy_helper(tmp_path: Path, program: str) -> Path:
    """The helper modules, as the image has them (images/helper.py copies every one)."""
    folder = tmp_path / "helper"
    folder.mkdir()
    for module in Path(fetch.__file__).parent.glob("*.py"):
        if module.name != "__init__.py":
            shutil.copyfile(module, folder / module.name)
    return folder / program


class Chunked:
    """A source that hands out `body` in reads of at most `size`, counting them, and
    fails with `error` once `fail_after` bytes are out."""

    def __init__(self, body: bytes, fail_after: int | None = None) -> None:
        self.body, self.at, self.reads, self.fail_after = body, 0, 0, fail_after

    def read(self, size: int, /) -> bytes:
        self.reads += 1
        if self.fail_after is not None and self.at >= self.fail_after:
            raise TimeoutError("the source stalled")
        chunk = self.body[self.at : self.at + size]
        self.at += len(chunk)
        return chunk


class FillsUp:
    """A file that takes `room` bytes and then answers as a full disk quota does."""

    def __init__(self, room: int) -> None:
        self.room, self.data = room, bytearray()

    def write(self, data: bytes, /) -> int:
        if len(self.data) + len(data) > self.room:
            raise OSError(28, "No space left on device")
        self.data += data
        return len(data)


def test_a_large_copy_hashes_and_writes_beside_its_reads_and_loses_nothing() -> None:
    body = bytes(range(256)) * (fetch.CHUNK_SIZE * 5 // 256) + b"tail"
    sink = FillsUp(len(body))
    digesting = fetch._Digesting(sink)
    threads = threading.active_count()
    assert fetch.copy_stream(Chunked(body), digesting) == len(body)
    assert bytes(sink.data) == body
    assert digesting.digest.hexdigest() == hashlib.sha256(body).hexdigest()
    assert threading.active_count() == threads, "the writer thread outlived the copy"


def test_a_full_disk_ends_a_large_copy_with_its_error_and_stops_reading() -> None:
    body = b"x" * (fetch.CHUNK_SIZE * 40)
    source = Chunked(body)
    with pytest.raises(OSError) as raised:
        fetch.copy_stream(source, FillsUp(fetch.CHUNK_SIZE * 2))
    assert raised.value.errno == 28
    # It stopped soon after the write failed: not the 40 reads of the whole source.
    assert source.reads <= 2 + fetch.OVERLAP_CHUNKS + 2, source.reads


def test_a_source_that_fails_mid_copy_ends_it_with_its_error_and_no_thread_left() -> None:
    threads = threading.active_count()
    source = Chunked(b"y" * (fetch.CHUNK_SIZE * 6), fail_after=fetch.CHUNK_SIZE * 3)
    with pytest.raises(TimeoutError):
        fetch.copy_stream(source, FillsUp(fetch.CHUNK_SIZE * 10))
    assert threading.active_count() == threads
