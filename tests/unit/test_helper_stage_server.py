"""fetch.py and filter.py where the node shares no disk with the server (Swarm): the spec
and the dataset owner's files come from the server, the results go back to it, each
request with the stage's token. Against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from localcompute.helper import fetch
from localcompute.helper import filter as output_filter

TOKEN = "t0k3n"


class Stage(ThreadingHTTPServer):
    spec: bytes
    seen: list[tuple[str, str, str, bytes, str]]  # method, path, authorization, body, sha


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def _record(self, body: bytes = b"") -> None:
        server = self.server
        assert isinstance(server, Stage)
        server.seen.append(
            (
                self.command,
                self.path,
                self.headers.get("Authorization", ""),
                body,
                self.headers.get("X-Content-Sha256", ""),
            )
        )

    def do_GET(self) -> None:
        self._record()
        server = self.server
        assert isinstance(server, Stage)
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(401, b"no")
        body = {
            "/job/fetch/fetch.json": server.spec,
            "/job/fetch/sources/0": b"owner's file\n",
        }.get(self.path)
        self._send(200 if body is not None else 404, body or b"none")

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self._record(body)
        self._send(200, b"{}")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def stage(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stage]:
    server = Stage(("127.0.0.1", 0), Handler)
    server.seen = []
    server.spec = b""
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    monkeypatch.setenv("LOCALCOMPUTE_STAGE_URL", f"http://127.0.0.1:{server.server_port}/job/fetch")
    monkeypatch.setenv("LOCALCOMPUTE_STAGE_TOKEN", TOKEN)
    yield server
    server.shutdown()
    server.server_close()


def test_the_fetch_downloads_its_spec_and_the_owners_file_from_the_server(
    stage: Stage, tmp_path: Path
) -> None:
    stage.spec = json.dumps(
        {
            "inputs": [{"did": "d1", "folder": "d1", "files": [{"path": "/sources/0"}]}],
            "algorithm": {"rawcode": "echo hi", "folder": "algo"},
        }
    ).encode()
    data = tmp_path / "data"
    assert fetch.main([str(tmp_path / "no-such" / "fetch.json"), "--data", str(data)]) == 0
    assert (data / "inputs" / "d1" / "0").read_bytes() == b"owner's file\n"
    assert (data / "transformations" / "algorithm").read_text() == "echo hi"
    assert [(m, p, a) for m, p, a, _, _ in stage.seen] == [
        ("GET", "/job/fetch/fetch.json", f"Bearer {TOKEN}"),
        ("GET", "/job/fetch/sources/0", f"Bearer {TOKEN}"),
    ]


def test_the_filter_uploads_each_result_with_its_sha256_then_the_manifest(
    stage: Stage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALCOMPUTE_STAGE_URL", f"http://127.0.0.1:{stage.server_port}/job/filter")
    outputs, results, meta, logs = (tmp_path / d for d in ("outputs", "results", "meta", "logs"))
    for folder in (outputs, results, meta, logs):
        folder.mkdir()
    (outputs / "r.txt").write_bytes(b"result\n")
    (logs / "algorithm.log").write_bytes(b"own\n")
    code = output_filter.main(
        [
            "--outputs",
            str(outputs),
            "--results",
            str(results),
            "--manifest",
            str(meta / "filter.json"),
            "--logs",
            str(logs),
        ]
    )
    assert code == 0
    sent = [(m, p, body, sha) for m, p, _, body, sha in stage.seen]
    assert sent[0] == (
        "PUT",
        "/job/filter/results/r.txt",
        b"result\n",
        hashlib.sha256(b"result\n").hexdigest(),
    )
    assert sent[1][:3] == ("PUT", "/job/filter/logs/algorithm.log", b"own\n")
    # The manifest last: the server takes it as the sign that everything arrived.
    assert sent[2][1] == "/job/filter/meta/filter.json"
    assert json.loads(sent[2][2])["results"][0]["filename"] == "r.txt"
