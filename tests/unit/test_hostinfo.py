"""What an environment advertises when its configuration is silent."""

from __future__ import annotations

from pathlib import Path

from localcompute.runtime.local.hostinfo import cpu_model


def test_cpu_model_comes_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Example CPU @ 3.00GHz\n")
    assert cpu_model(info) == "Example CPU @ 3.00GHz"


def test_cpu_model_falls_back_without_cpuinfo(tmp_path: Path) -> None:
    assert cpu_model(tmp_path / "missing") != ""
