"""The results list: outputs as the filter measured them (read once, by the filter, as it
moved them), the logs measured here; a file whose size is not the filter's is read again."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from localcompute.engine import publish
from localcompute.runtime.workspace import Workspace, file_digest


def workspace(tmp_path: Path, outputs: dict[str, bytes], sizes: dict[str, int]) -> Workspace:
    ws = Workspace(tmp_path / "job")
    for folder in (ws.results, ws.adminlogs, ws.filter_manifest.parent):
        folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, data in outputs.items():
        (ws.results / name).write_bytes(data)
        entries.append(
            {
                "filename": name,
                "filesize": sizes.get(name, len(data)),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    ws.filter_manifest.write_text(json.dumps({"results": entries, "refused": []}))
    (ws.adminlogs / "configure.log").write_text("fetched\n")
    return ws


def test_outputs_are_listed_with_the_filter_s_digest_without_reading_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"x" * 1000
    ws = workspace(tmp_path, {"out.bin": data}, {})
    read: list[str] = []

    def counted(path: Path) -> tuple[int, str]:
        read.append(path.name)
        return file_digest(path)

    monkeypatch.setattr(publish, "file_digest", counted)
    results = publish.build_results(ws, algorithm_ran=False)
    [out] = [r for r in results if r.filename == "out.bin"]
    assert (out.filesize, out.sha256) == (1000, hashlib.sha256(data).hexdigest())
    assert "out.bin" not in read and "configure.log" in read


def test_an_output_whose_size_changed_is_read_again(tmp_path: Path) -> None:
    data = b"y" * 10
    ws = workspace(tmp_path, {"out.bin": data}, {"out.bin": 99})
    [out] = [r for r in publish.build_results(ws, algorithm_ran=False) if r.type == "output"]
    assert (out.filesize, out.sha256) == (10, hashlib.sha256(data).hexdigest())
