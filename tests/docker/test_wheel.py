"""An installed wheel has everything the commands need: built, installed into a fresh
venv outside the source tree, it builds the helper image, runs a job, and prints the
example configuration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from localcompute.core.config_file import load_settings
from tests.conftest import BUSYBOX_IMAGE, unique

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]


def sh(*command: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `localcompute` command of a wheel built from this checkout, installed elsewhere."""
    folder = tmp_path_factory.mktemp("wheel")
    sh(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "-w",
        folder / "dist",
        REPO,
        cwd=folder,
    )
    [wheel] = (folder / "dist").glob("localcompute-*.whl")
    # A venv without a pip of its own, filled by this one (--python): the wheel and its
    # dependencies as a user's pip installs them, without the 4 s of ensurepip; nor
    # byte-compiled ahead (what the commands import compiles when first imported).
    sh(sys.executable, "-m", "venv", "--without-pip", folder / "venv", cwd=folder)
    python = folder / "venv" / "bin" / "python"
    sh(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "-q",
        "--no-compile",
        wheel,
        cwd=folder,
    )
    return folder / "venv" / "bin" / "localcompute"


def test_a_wheel_installed_elsewhere_builds_the_helper_and_runs_a_job(
    tmp_path: Path, busybox_image: str, installed: Path
) -> None:
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
            installed,
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
        installed,
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


def test_a_wheel_installed_elsewhere_prints_the_example_configuration(
    tmp_path: Path, installed: Path
) -> None:
    text = sh(installed, "config", "example", cwd=tmp_path)
    # The repository's file itself, not a copy that could drift from it.
    assert text == (REPO / "config.example.toml").read_text()
    # Printed alone, it names the worked example's dataset, which is not beside it; --into
    # writes both, and the server's own loader takes the result.
    into = tmp_path / "etc"
    sh(installed, "config", "example", "--into", str(into), cwd=tmp_path)
    saved = into / "config.toml"
    assert saved.read_text() == text
    settings = load_settings(saved)
    assert settings.data_dir == into / "var"  # "./var", beside the saved file
    sales = (REPO / "examples" / "data" / "sales.csv").read_bytes()
    assert [d.files for d in settings.datasets] == [[str(into / "examples/data/sales.csv")]]
    assert (into / "examples" / "data" / "sales.csv").read_bytes() == sales
