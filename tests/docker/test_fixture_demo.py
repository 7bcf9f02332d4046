"""The pytest plugin from another project's point of view: examples/fixture-demo, a tiny
project that depends on localcompute and tests its algorithm with the plugin's fixtures
only, passes when run as that project runs its tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

DEMO = Path(__file__).resolve().parents[2] / "examples" / "fixture-demo"


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
