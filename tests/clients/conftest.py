"""Ocean's clients against a server started with the README's command.

The client environments are built once (see envs.py) and shared by the session;
the server runs for the module, with a paid environment listed before the free
one, so a client that picks the free one has to look.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.clients.envs import Builds, ClientSetupError, OceanJs, OceanPy
from tests.served import README_SERVE, Served, running_server

FLOWS = Path(__file__).resolve().parent / "flows"
FLOW_TIMEOUT = 300
PAID_FIRST = """
[[environments]]
id = "paid"
price_min = 1.5
max_jobs = 1
max_job_duration = 60
"""


@pytest.fixture(scope="session")
def client_builds() -> Iterator[Builds]:
    builds = Builds()
    yield builds
    builds.close()


@pytest.fixture(scope="session")
def ocean_py(client_builds: Builds) -> OceanPy:
    try:
        return client_builds.ocean_py()
    except ClientSetupError as e:
        pytest.fail(f"ocean.py could not be installed: {e}", pytrace=False)


def ocean_js(builds: Builds, version: str) -> OceanJs:
    try:
        return builds.ocean_js(version)
    except ClientSetupError as e:
        pytest.fail(f"ocean.js {version} could not be installed: {e}", pytrace=False)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, busybox_image: str) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("clients")
    with running_server(root, command=README_SERVE, environments_first=PAID_FIRST) as server:
        yield server


@dataclass
class FlowRun:
    report: dict[str, Any]
    output: str


def run_flow(command: list[str], report: Path, served: Served) -> FlowRun:
    """Run a client's flow; when it fails, show the client's own error and the server's log."""
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=FLOW_TIMEOUT, cwd=report.parent
        )
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as e:
        code, output = -1, f"timed out after {FLOW_TIMEOUT} s\n{e.stdout!r}\n{e.stderr!r}"
    if code != 0:
        server_log = (served.root / "server.log").read_text(errors="replace").splitlines()
        pytest.fail(
            f"the client's flow failed (exit {code}):\n{output}\n"
            "--- the server's log, last 40 lines:\n" + "\n".join(server_log[-40:]),
            pytrace=False,
        )
    return FlowRun(json.loads(report.read_text()), output)
