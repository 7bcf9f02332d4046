"""localcompute as a container image: built without a registry, it refuses a data folder
mounted at another path, and otherwise serves jobs on the host's engine and stops cleanly."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from localcompute.client import SyncClient
from tests.conftest import BUSYBOX_IMAGE, docker_ps, unique
from tests.served import free_port

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

DID = "did:op:" + "cd" * 32


def docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300)


def test_the_server_image_runs_jobs_on_the_host_engine(tmp_path: Path, busybox_image: str) -> None:
    tag = f"localcompute/server:{unique('test')}"
    base = docker(
        "image", "inspect", "localcompute/helper:latest",
        "--format", '{{index .Config.Labels "localcompute.base"}}',
    ).stdout.strip()  # fmt: skip
    built = subprocess.run(
        [sys.executable, "-m", "localcompute", "images", "server", "--tag", tag, "--base", base],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    folder = tmp_path.resolve()
    (folder / "datasets").mkdir()
    (folder / "datasets" / "d.csv").write_text("from the server image\n")
    port = free_port()
    (folder / "config.toml").write_text(
        f'[server]\nport = {port}\ndata_dir = "{folder / "var"}"\n'
        '[docker]\npull_policy = "never"\nfetch_network = "host"\n'
        '[[environments]]\nid = "test"\nmax_jobs = 1\n'
        f'[provider]\ndataset_roots = ["{folder / "datasets"}"]\n'
        f'[[datasets]]\ndid = "{DID}"\nfiles = ["{folder / "datasets" / "d.csv"}"]\n'
    )
    run = ["run", "--network", "host", "-v", "/var/run/docker.sock:/var/run/docker.sock"]
    config = f"{folder / 'config.toml'}:/etc/localcompute/config.toml:ro"
    name = unique("lc-server")
    try:
        # Mounted at another path inside: the host's engine could not find the job folders.
        wrong = docker(*run, "--rm", "-v", f"{folder}:/data", "-v", config, tag)
        assert wrong.returncode == 2
        assert "the same path inside and out" in wrong.stderr

        started = docker(*run, "-d", "--name", name, "-v", f"{folder}:{folder}", "-v", config, tag)
        assert started.returncode == 0, started.stderr
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, docker("logs", name).stderr
                time.sleep(0.3)
        with SyncClient(url) as client:
            job = client.start(
                [DID],
                rawcode="cat /data/inputs/*/0 > $OUTPUTS/copy.txt",
                image=BUSYBOX_IMAGE.split(":")[0],
                entrypoint="sh $ALGO",
            )
            done = client.wait(job.job_id, max_wait=120)
            assert done.status == 70, done.reason
            copy = client.download(job.job_id, "copy.txt", tmp_path)
            assert copy.read_text() == "from the server image\n"
        stop = time.monotonic()
        assert docker("stop", name).returncode == 0
        assert time.monotonic() - stop < 10
        assert docker("inspect", name, "--format", "{{.State.ExitCode}}").stdout.strip() == "0"
        assert docker_ps(f"label=localcompute.job_id={job.job_id}") == []
    finally:
        docker("rm", "-f", name)
        docker("rmi", "-f", tag)
