"""A server killed at every failpoint comes back and finishes the job: its algorithm run
exactly once, its results whole, nothing left on the engine.

Each case arms one point of `failpoints.POINTS` in a child engine, which must die
there (exit status EXIT_CODE); an engine started on the same folder then takes the
job to its end. The algorithm counts its runs by fetching a URL of a test server.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from localcompute import FileSource, InputSpec, JobStatus, TerminationReason
from localcompute.engine import failpoints
from localcompute.runtime.containers import Stage
from localcompute.runtime.workspace import Workspace
from tests.conftest import STARTED_INSTANCES, FileServer, docker_ps, mounts_under
from tests.docker.conftest import (
    ROOT,
    EngineFactory,
    raw_job,
    receipt_problem,
    result_text,
    url_input,
    wait_final,
)

pytestmark = pytest.mark.docker

ENV = [
    {
        "id": "test",
        "max_jobs": 1,
        "max_job_duration": 60,
        "cpu": 0.5,
        "ram_gb": 0.25,
        "disk_gb": 0.05,
        "algorithm_network": True,  # to count its runs at the test server
        "storage_expiry": 3600,
    }
]
DID = "did:op:" + "a" * 64


def scenario(point: str) -> str:
    """Which job and which action reach `point`."""
    if point.startswith(("delete.", "expiry.")):
        return point.partition(".")[0]
    if point.endswith(f"_{int(JobStatus.DATA_PROVISIONING_FAILED)}"):
        return "no-data"
    if point.endswith(f"_{int(JobStatus.ALGORITHM_PROVISIONING_FAILED)}"):
        return "no-image"
    if point.startswith("fetch.here_"):
        return "local"  # a fetch with nothing to download runs on this host
    return "run"


def child_settings(point: str) -> dict[str, Any]:
    """The filter runs in its container unless told otherwise; its points on this host
    need host_filter."""
    here = point.startswith(f"{Stage.FILTER}.here_")
    return {"environments": ENV, **({"host_filter": True} if here else {})}


def die_at(point: str, data_dir: Path, spec_json: str, action: str) -> tuple[int, str, str]:
    """Run a child engine with `point` armed; its exit status and what it printed."""
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.docker.failpoint_child",
            str(data_dir),
            json.dumps(child_settings(point)),
            action,
            spec_json,
        ],
        cwd=ROOT,
        env={**os.environ, failpoints.VARIABLE: point},
        capture_output=True,
        text=True,
        timeout=90,
    )
    return child.returncode, child.stdout, child.stderr


@pytest.mark.parametrize("point", failpoints.POINTS)
async def test_a_job_killed_at_each_failpoint_finishes_once(
    point: str,
    data_dir: Path,
    busybox_image: str,
    file_server: FileServer,
    engine_factory: EngineFactory,
) -> None:
    kind = scenario(point)
    token = f"run-{uuid.uuid4().hex}"
    file_server.add(token, "counted")
    data = file_server.add("data.csv", "payload\n")
    missing = file_server.url("no-such-file")
    script = (
        f"wget -q -O /dev/null {file_server.url(token)} || exit 9; "
        "cat /data/inputs/*/0 > $OUTPUTS/out.txt; sleep 0.3"
    )
    extra: dict[str, Any] = {}
    if kind == "no-image":
        extra["image"] = "localcompute-test/no-such-image:1"
    if kind == "local":
        local = data_dir.parent / "data.csv"
        await asyncio.to_thread(local.write_text, "payload\n")
        await asyncio.to_thread(local.chmod, 0o644)
        inputs = [InputSpec(did=DID, files=[FileSource(path=str(local))])]
    else:
        inputs = [url_input(DID, missing if kind == "no-data" else data)]
    spec = raw_job(script, inputs=inputs, **extra)
    action = kind if kind in ("delete", "expiry") else "run"
    code, out, err = await asyncio.to_thread(
        die_at, point, data_dir, spec.model_dump_json(), "expire" if action == "expiry" else action
    )
    for line in out.splitlines():
        if line.startswith("instance "):
            STARTED_INSTANCES.add(line.split()[1])
    assert code == failpoints.EXIT_CODE, f"{point} was never reached:\n{out}\n{err[-3000:]}"
    engine = await engine_factory(environments=ENV)
    # Killed inside admission, the child never printed the id: the store has the one job.
    (job_id,) = [job.job_id for job in await engine.find()]
    if action in ("delete", "expiry"):
        if action == "expiry":
            await engine.expire_results(now=10**12)
        job = await wait_final(engine, job_id)
        for _ in range(100):
            if (job := await engine.get(job_id)).removed:
                break
            await asyncio.sleep(0.05)
        assert job.removed and job.results == []
        assert not Workspace.of(data_dir, job_id).root.exists()
    else:
        job = await wait_final(engine, job_id)
        if kind == "no-data":
            assert job.status == JobStatus.DATA_PROVISIONING_FAILED, job.status_text
        elif kind == "no-image":
            assert job.status == JobStatus.ALGORITHM_PROVISIONING_FAILED, job.status_text
        else:
            assert (job.status, job.termination_reason) == (
                JobStatus.JOB_COMPLETED,
                TerminationReason.COMPLETED,
            ), job.status_text
            assert result_text(engine, job, "out.txt") == "payload\n"
            names = [r.filename for r in job.results]
            assert len(names) == len(set(names)), f"duplicate results: {names}"
        # However it ended, and wherever the server died, the job has its one receipt.
        assert receipt_problem(engine, job) == ""
    runs = file_server.requests.count(token)
    assert runs == (0 if kind in ("no-data", "no-image") else 1), f"the algorithm ran {runs} times"
    # Nothing of the job is left on the engine or the host.
    assert docker_ps(f"label=localcompute.job_id={job_id}") == []
    assert mounts_under(data_dir) == []
