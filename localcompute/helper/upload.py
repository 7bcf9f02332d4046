"""The filter's upload, where the job's node shares no disk with the server (Swarm): each
result with its sha256, the algorithm's own log, then the manifest, PUT to the server
with the filter's stage token.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import stat
import urllib.parse
from pathlib import Path

UPLOAD_TIMEOUT = 60.0


class UploadError(Exception):
    """The server did not take a file."""


def upload_all(url: str, token: str, results: Path, manifest: Path, own_log: Path | None) -> None:
    """Each result (its sha256 said, for the server to check), the algorithm's own log,
    then the manifest: last, since the server takes it as the sign that all arrived."""
    data = json.loads(manifest.read_text(encoding="utf-8"))
    for entry in data.get("results", []):
        name = entry["filename"]
        put_file(url, token, f"results/{name}", results / name, entry["sha256"])
    if own_log is not None:
        put_file(url, token, "logs/algorithm.log", own_log, None)
    put_file(url, token, "meta/filter.json", manifest, None)


def put_file(url: str, token: str, name: str, path: Path, sha256: str | None) -> None:
    parts = urllib.parse.urlsplit(url.rstrip("/") + "/" + urllib.parse.quote(name))
    connection_type = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_type(parts.hostname or "", parts.port, timeout=UPLOAD_TIMEOUT)
    with contextlib.closing(connection), path.open("rb") as body:
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/octet-stream",
            "Content-Length": str(os.fstat(body.fileno()).st_size),
            **({"X-Content-Sha256": sha256} if sha256 else {}),
        }
        connection.request("PUT", parts.path, body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read(2000).decode("utf-8", "replace")
        if response.status >= 300:
            raise UploadError(f"{name}: the server answered {response.status}: {answer}")


def own_log_file(logs: Path | None) -> Path | None:
    """The algorithm's own algorithm.log, if it is a regular file (never a link it planted)."""
    if logs is None:
        return None
    path = logs / "algorithm.log"
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return path if stat.S_ISREG(info.st_mode) else None
