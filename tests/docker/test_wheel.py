"""An installed wheel has everything the commands need: built, installed into a fresh
venv outside the source tree, it builds the helper image and runs a job."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BUSYBOX_IMAGE, unique

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]


def sh(*command: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_a_wheel_installed_elsewhere_builds_the_helper_and_runs_a_job(
    tmp_path: Path, busybox_image: str
) -> None:
    sh(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "-w",
        tmp_path / "dist",
        REPO,
        cwd=tmp_path,
    )
    [wheel] = (tmp_path / "dist").glob("localcompute-*.whl")
    sh(sys.executable, "-m", "venv", tmp_path / "venv", cwd=tmp_path)
    sh(tmp_path / "venv" / "bin" / "pip", "install", "-q", wheel, cwd=tmp_path)
    command = tmp_path / "venv" / "bin" / "localcompute"

    # On the base the set-up built the helper on: no registry is needed.
    base = sh(
        "docker",
        "image",
        "inspect",
        "localcompute/helper:latest",
        "--format",
        '{{index .Config.Labels "localcompute.base"}}',
        cwd=tmp_path,
    ).strip()
    tag = f"localcompute/helper:{unique('wheel')}"
    try:
        out = sh(
            command,
            "images",
            "build",
            "--tag",
            tag,
            "--base",
            base,
            cwd=tmp_path,
        )
        assert f"built {tag}" in out
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)

    (tmp_path / "data.csv").write_text("from the wheel\n")
    (tmp_path / "algo.sh").write_text("cat /data/inputs/*/0 > /data/outputs/copy.txt\n")
    sh(
        command,
        "run",
        "algo.sh",
        "--image",
        BUSYBOX_IMAGE.split(":")[0],
        "--input",
        "data.csv",
        "--out",
        "out",
        cwd=tmp_path,
    )
    assert (tmp_path / "out" / "copy.txt").read_text() == "from the wheel\n"
