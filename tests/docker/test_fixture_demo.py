"""The pytest plugin from another project's point of view: examples/fixture-demo, a tiny
project that depends on localcompute and tests its algorithm with the plugin's fixtures
only, passes when run as that project runs its tests; and a job such a project leaves
running fails its session and leaves nothing on the host."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localcompute.pytest_plugin import LocalComputeServer, start_server
from tests.conftest import BUSYBOX_IMAGE, docker_ps, mounts_under

pytestmark = pytest.mark.docker

DEMO = Path(__file__).resolve().parents[2] / "examples" / "fixture-demo"
DATASET_DID = "did:op:" + "ab" * 32


def test_the_example_project_passes_with_only_the_plugin(busybox_image: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore"],
        cwd=DEMO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def loop_devices_backed_under(folder: Path) -> list[str]:
    """Loop devices whose backing file is (or was, if deleted) under `folder`."""
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        if backing.read_text().strip().startswith(str(folder)):
            found.append(backing.parts[3])
    return found


def start_a_long_job(server: LocalComputeServer) -> str:
    """A job whose algorithm runs for minutes, once it runs."""
    client = server.client()
    name, _, tag = BUSYBOX_IMAGE.partition(":")
    job = client.start(
        [DATASET_DID],
        rawcode="sleep 300",
        environment="small",
        image=name,
        tag=tag,
        entrypoint="sh $ALGO",
    )
    algorithm = (f"label=localcompute.job_id={job.job_id}", "label=localcompute.stage=algorithm")
    deadline = time.monotonic() + 60
    while not docker_ps(*algorithm, "status=running") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.status(job.job_id).status == 40, "its algorithm runs"
    return job.job_id


def test_a_job_left_running_fails_the_session_and_nothing_of_it_survives(
    busybox_image: str, tmp_path: Path
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.txt").write_text("x\n")
    server = start_server(
        tmp_path / "server",
        {
            "docker": {"pull_policy": "never"},
            "pool": {"disk_quota": "loop"},
            "environments": [
                {"id": "small", "max_jobs": 1, "max_job_duration": 300, "disk_gb": 0.05}
            ],
            "provider": {"dataset_roots": ["data"]},
            "datasets": [{"did": DATASET_DID, "files": ["data/in.txt"]}],
        },
        relative_to=tmp_path,
    )
    instance = server.instance
    try:
        job_id = start_a_long_job(server)
        folder = server.data_dir / "jobs" / job_id
        assert mounts_under(folder) == [str(folder / "data")], "the job runs on its loop disk"
    except BaseException:
        with contextlib.suppress(pytest.fail.Exception):
            server.stop()
        raise

    with pytest.raises(pytest.fail.Exception) as failed:
        server.stop()  # at the session's end, the test that started it long gone

    lines = str(failed.value).splitlines()
    assert lines[0].startswith("localcompute left job containers behind: ")
    assert lines[1] == f"localcompute left job disks mounted: [{job_id!r}]"
    assert docker_ps(f"label=localcompute.instance={instance}") == []
    assert mounts_under(tmp_path) == []
    assert loop_devices_backed_under(tmp_path) == []
    assert not folder.exists()
