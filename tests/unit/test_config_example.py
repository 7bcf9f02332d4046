"""`localcompute config example`: the example configuration, from wherever it is installed."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from localcompute.cli import config, main
from localcompute.core.settings import Settings, parse_settings

ROOT = Path(__file__).resolve().parents[2]


def test_it_prints_the_example_file_and_that_is_a_valid_configuration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["config", "example"]) == 0
    out = capsys.readouterr().out
    assert out == (ROOT / "config.example.toml").read_text()
    assert isinstance(parse_settings(tomllib.loads(out), "example"), Settings)


def test_the_packaged_copy_is_read_before_a_checkouts_root_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packaged, root = tmp_path / "pkg.toml", tmp_path / "root.toml"
    packaged.write_text("# packaged\n")
    root.write_text("# root\n")
    monkeypatch.setattr(config, "EXAMPLE_PLACES", (packaged, root))
    assert config.example_text() == "# packaged\n"
    packaged.unlink()
    assert config.example_text() == "# root\n"


def test_without_the_file_it_says_how_to_install_one_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(config, "EXAMPLE_PLACES", (tmp_path / "a.toml", tmp_path / "b.toml"))
    assert main(["config", "example"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert "config.example.toml is not installed" in line
    assert "pip wheel" in line
