"""Configuration: defaults, the example file, and errors that name file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from localcompute.core.errors import ConfigError
from localcompute.core.settings import CONFIG_ENV_VAR, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_example_file_equals_the_built_in_defaults() -> None:
    assert load_settings(ROOT / "config.example.toml") == Settings()


def test_no_file_means_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    assert load_settings(None) == Settings()


def test_environment_variable_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[server]\nport = 9999\n[[environments]]\nid = "gpu"\ngpu_devices = ["0"]\n')
    monkeypatch.setenv(CONFIG_ENV_VAR, str(path))
    settings = load_settings(None)
    assert settings.server.port == 9999
    assert settings.environments[0].gpu_count == 1


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[docker]\nbogus = 1\n", "docker.bogus"),
        ('[[environments]]\nid = "a"\ncpu = "many"\n', "environments[0].cpu"),
        ('[[environments]]\nid = "a"\nmax_jobs = 0\n', "environments[0].max_jobs"),
        ('[docker]\npull_policy = "sometimes"\n', "docker.pull_policy"),
        ('[[environments]]\nid = "a"\n[[environments]]\nid = "a"\n', "declared twice"),
        ('[[environments]]\nid = "../x"\n', "environments[0].id"),
    ],
)
def test_errors_name_the_file_and_the_key(tmp_path: Path, toml: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(path) in info.value.message and expected in info.value.message


def test_unparsable_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_settings(tmp_path / "missing.toml")


def test_local_dataset_outside_the_roots_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[provider]\ndataset_roots = ["{tmp_path / "data"}"]\n'
        '[[datasets]]\ndid = "did:op:aa"\nfiles = ["/etc/shadow"]\n'
    )
    with pytest.raises(ConfigError, match="not under any"):
        load_settings(path)
