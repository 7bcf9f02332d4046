"""What a job's filter on a node without the server's disk may upload, and what its fetch
may download: the engine's rules, with a store that holds one job."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from localcompute.core.errors import AccessDeniedError, InvalidJobError, JobConflictError
from localcompute.core.stagekey import StageKey
from localcompute.core.status import JobStatus
from localcompute.engine import stage_files
from localcompute.engine.stage_files import StageFiles
from localcompute.runtime.workspace import Workspace
from localcompute.store import Store

JOB = "j1"


def files(tmp_path: Path, status: JobStatus = JobStatus.FILTERING_RESULTS) -> StageFiles:
    job = SimpleNamespace(
        status=status,
        status_text=str(int(status)),
        allocation=SimpleNamespace(disk_bytes=100),
        spec=SimpleNamespace(local_paths=[str(tmp_path / "owner.csv")]),
    )

    class OneJob:
        async def get(self, job_id: str) -> Any:
            return job

    ws = Workspace.of(tmp_path, JOB)
    for folder in (ws.results, ws.meta, ws.adminlogs):
        folder.mkdir(parents=True)
    return StageFiles(
        cast(Store, OneJob()),
        tmp_path,
        StageKey(b"k" * 32),
        log_limit=1000,
        disk_limit=lambda job: 100,
    )


async def body(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_a_result_is_taken_only_whole_and_with_the_sha256_it_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stage_files, "SLACK_BYTES", 50)  # a small job's: 100 + 50
    stage = files(tmp_path)
    token = StageKey(b"k" * 32).token(JOB, "filter")
    results = Workspace.of(tmp_path, JOB).results
    with pytest.raises(InvalidJobError, match="sha256"):
        await stage.receive(JOB, token, "results/a.txt", sha(b"other"), body(b"data"))
    with pytest.raises(InvalidJobError, match="more than the job's 200 bytes"):
        await stage.receive(JOB, token, "results/big", sha(b"x" * 201), body(b"x" * 201))
    with pytest.raises(InvalidJobError, match="needs its X-Content-Sha256"):
        await stage.receive(JOB, token, "results/a.txt", None, body(b"data"))
    assert list(results.iterdir()) == []  # nothing of a refused upload stays
    await stage.receive(JOB, token, "results/a.txt", sha(b"data"), body(b"da", b"ta"))
    assert (results / "a.txt").read_bytes() == b"data"


@pytest.mark.parametrize("name", ["results/../meta/x", "results/", "meta/other.json", "x"])
async def test_nothing_lands_outside_the_jobs_results(tmp_path: Path, name: str) -> None:
    stage = files(tmp_path)
    token = StageKey(b"k" * 32).token(JOB, "filter")
    with pytest.raises(Exception, match="cannot upload"):
        await stage.receive(JOB, token, name, sha(b"d"), body(b"d"))


async def test_the_manifest_is_taken_only_when_every_result_it_lists_arrived(
    tmp_path: Path,
) -> None:
    stage = files(tmp_path)
    token = StageKey(b"k" * 32).token(JOB, "filter")
    ws = Workspace.of(tmp_path, JOB)
    listed = {"results": [{"filename": "a.txt", "filesize": 4, "sha256": sha(b"data")}]}
    manifest = json.dumps(listed).encode()
    with pytest.raises(InvalidJobError, match="not uploaded"):
        await stage.receive(JOB, token, "meta/filter.json", None, body(manifest))
    assert not ws.filter_finished()
    await stage.receive(JOB, token, "results/a.txt", sha(b"data"), body(b"data"))
    await stage.receive(JOB, token, "meta/filter.json", None, body(manifest))
    assert ws.filter_finished()


async def test_the_algorithms_own_log_comes_first_in_the_published_one(tmp_path: Path) -> None:
    stage = files(tmp_path)
    token = StageKey(b"k" * 32).token(JOB, "filter")
    ws = Workspace.of(tmp_path, JOB)
    ws.published_algorithm_log.write_bytes(b"its output\n")
    await stage.receive(JOB, token, "logs/algorithm.log", None, body(b"its own log\n"))
    assert ws.published_algorithm_log.read_bytes() == b"its own log\nits output\n"


async def test_a_token_opens_its_job_and_stage_only_while_the_job_is_there(
    tmp_path: Path,
) -> None:
    key = StageKey(b"k" * 32)
    (tmp_path / "owner.csv").write_text("owner's\n")
    fetching = files(tmp_path / "f", JobStatus.CONFIGURING_VOLUMES)
    with pytest.raises(AccessDeniedError):
        await fetching.spec(JOB, key.token("j2", "fetch"))
    with pytest.raises(AccessDeniedError):
        await fetching.spec(JOB, key.token(JOB, "filter"))
    assert (await fetching.spec(JOB, key.token(JOB, "fetch"))).name == "fetch.json"
    filtering = files(tmp_path / "g")
    with pytest.raises(JobConflictError):
        await filtering.spec(JOB, key.token(JOB, "fetch"))
