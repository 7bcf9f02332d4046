"""Configuration: defaults, the example file, and errors that name file and key."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from localcompute.core.config_file import load_settings, parse_settings
from localcompute.core.errors import ConfigError
from localcompute.core.settings import CONFIG_ENV_VAR, Settings

ROOT = Path(__file__).resolve().parents[2]


def test_example_file_equals_the_built_in_defaults_but_for_its_data_dir_and_dataset() -> None:
    example = load_settings(ROOT / "config.example.toml")
    assert example.server.data_dir == ROOT / "var"  # "./var", next to the file
    # The worked example's dataset, next to the file too, under its sha256 as `run` names it.
    sales = ROOT / "examples" / "data" / "sales.csv"
    [dataset] = example.datasets
    assert dataset.files == [str(sales)] and example.provider.dataset_roots == [sales.parent]
    assert dataset.did == "did:op:" + hashlib.sha256(sales.read_bytes()).hexdigest()
    defaults = Settings()
    assert (
        example.model_copy(
            update={
                "server": defaults.server,
                "datasets": [],
                "provider": example.provider.model_copy(update={"dataset_roots": []}),
            }
        )
        == defaults
    )
    assert example.server.model_copy(update={"data_dir": defaults.server.data_dir}) == (
        defaults.server
    )


def test_no_file_means_defaults_and_a_data_dir_that_is_not_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    monkeypatch.chdir("/")
    assert load_settings(None) == Settings()
    assert Settings().data_dir == tmp_path / "share" / "localcompute"


def test_paths_in_a_file_are_relative_to_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "a.csv").write_text("x")
    (folder / "c.toml").write_text(
        '[server]\ndata_dir = "var"\n'
        '[provider]\nprivate_key_file = "keys/p.key"\ndataset_roots = ["data"]\n'
        '[[datasets]]\ndid = "did:op:aa"\nfiles = ["data/a.csv", "https://x/y.csv"]\n'
    )
    monkeypatch.chdir("/")  # started from anywhere, it reads and writes beside the file
    settings = load_settings(folder / "c.toml")
    assert settings.data_dir == folder / "var"
    assert settings.provider.private_key_file == str(folder / "keys" / "p.key")
    assert settings.provider.dataset_roots == [folder / "data"]
    assert settings.datasets[0].files == [str(folder / "data" / "a.csv"), "https://x/y.csv"]


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


def test_keys_that_left_docker_are_read_where_they_were_and_said_to_have_moved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    old: dict[str, object] = {
        "docker": {"download_idle_timeout": 7, "reconcile_interval": 5, "stop_grace": 1}
    }
    with caplog.at_level("WARNING"):
        settings = parse_settings(old, "old.toml")
    assert settings.downloads.idle_timeout == 7 and settings.server.reconcile_interval == 5
    assert settings.docker.stop_grace == 1
    assert "old.toml: [docker] download_idle_timeout is now [downloads] idle_timeout" in caplog.text
    both: dict[str, object] = {
        "docker": {"reconcile_interval": 5},
        "server": {"reconcile_interval": 6},
    }
    with pytest.raises(ConfigError, match="both set: keep one"):
        parse_settings(both, "both.toml")


def test_the_readme_gives_every_fairness_and_connection_key_with_its_default() -> None:
    from localcompute.core.limit_settings import AddressLimits, ConnectionSettings, LimitSettings

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`["):
            rows[cells[0]] = cells[1]

    def shown(value: object) -> str:
        if isinstance(value, bool):
            return f"`{str(value).lower()}`"
        if isinstance(value, float) and value.is_integer():
            return f"`{int(value)}`"
        return f"`{value}`"

    expected = {
        **{
            f"`[limits] {k}`": shown(f.default)
            for k, f in LimitSettings.model_fields.items()
            if k != "addresses"
        },
        **{
            f"`[connections] {k}`": shown(f.default)
            for k, f in ConnectionSettings.model_fields.items()
        },
        '`[limits.addresses."0x…"] weight`': shown(AddressLimits.model_fields["weight"].default),
        '`[limits.addresses."0x…"] exempt`': shown(AddressLimits.model_fields["exempt"].default),
        "`[[environments]] queue_max_wait`": "`0`",
    }
    assert {k: rows.get(k) for k in expected} == expected
