"""`localcompute config example`: the example configuration, from wherever it is installed."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from localcompute.cli import config, main
from localcompute.core.config_file import load_settings, parse_settings
from localcompute.core.settings import Settings

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


def test_into_writes_a_configuration_the_server_loads_with_its_worked_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    into = tmp_path / "etc"
    assert main(["config", "example", "--into", str(into)]) == 0
    assert str(into / "config.toml") in capsys.readouterr().out
    settings = load_settings(into / "config.toml")
    [dataset] = settings.datasets
    [file] = dataset.files
    assert Path(file).read_bytes() == (ROOT / "examples/data/sales.csv").read_bytes()
    algorithm = into / "examples/algorithms/sales_by_region.py"
    assert algorithm.read_bytes() == (ROOT / "examples/algorithms/sales_by_region.py").read_bytes()


def test_into_overwrites_nothing_and_writes_nothing_when_a_file_is_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "examples/data").mkdir(parents=True)
    (tmp_path / "examples/data/sales.csv").write_text("mine\n")
    assert main(["config", "example", "--into", str(tmp_path)]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "sales.csv exists already" in line
    assert not (tmp_path / "config.toml").exists()
    assert (tmp_path / "examples/data/sales.csv").read_text() == "mine\n"
