"""The README's worked example, as a new user types it: `scripts/run serve` with
config.example.toml, then `localcompute run --server` on the dataset it ships.

The repository's config and examples/ are copied to a folder of the test's own, so the
server reads exactly the shipped file but keeps its data (and its lock) out of the
checkout's var/; --port takes a free port where the user's server has 8030."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.served import README_SERVE, REPO, free_port

pytestmark = pytest.mark.docker

ALGORITHM = "examples/algorithms/sales_by_region.py"
# Where the host cannot pull python:3.12-slim (no registry), the local base setup made.
LOCAL_PYTHON = ["--image", "localcompute/python-base", "--tag", "stable"]


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("worked")
    shutil.copy(REPO / "config.example.toml", folder)
    shutil.copytree(REPO / "examples", folder / "examples")
    return folder


@pytest.fixture(scope="module")
def server(clone: Path, docker_engine: None) -> Iterator[str]:
    """`scripts/run serve --port N`, on the copied config.example.toml."""
    port = free_port()
    config = str(clone / "config.example.toml")
    with (clone / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [*README_SERVE, "--port", str(port), "--config", config],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/", timeout=2):
                    break
            except OSError:
                assert process.poll() is None, (clone / "server.log").read_text()
                assert time.monotonic() < deadline, (clone / "server.log").read_text()
                time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0, (clone / "server.log").read_text()


def has_image(ref: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode == 0


def test_run_on_the_shipped_dataset_gives_sales_by_region(clone: Path, server: str) -> None:
    did = tomllib.loads((clone / "config.example.toml").read_text())["datasets"][0]["did"]
    fallback = [] if has_image("python:3.12-slim") else [*LOCAL_PYTHON, "--entrypoint"]
    command = [ALGORITHM, "--server", server, "--input", did]
    if fallback:
        command += [*fallback, "python3 $ALGO"]
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "localcompute"), "run", *command],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "XDG_CONFIG_HOME": str(clone / "config")},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "  | north    224 units     984.25" in done.stdout.splitlines()  # live
    [job] = (clone / "results").iterdir()
    assert (job / "by_region.csv").read_text().splitlines() == [
        "region,units,amount",
        "east,146,598.75",
        "north,224,984.25",
        "south,143,576.25",
        "west,149,613.00",
    ]
    assert (clone / "var" / "localcompute.sqlite").is_file()  # beside the config file
