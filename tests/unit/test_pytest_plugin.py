"""The plugin's configuration: what a project hands it becomes valid settings, its relative
paths those of the project's folder; and why a server did not start, in its own words."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from localcompute.core.config_file import parse_settings
from localcompute.pytest_config import merge, session_config, to_toml
from localcompute.pytest_plugin import start_error


def test_a_merged_configuration_is_written_as_toml_that_reads_back_the_same(
    tmp_path: Path,
) -> None:
    base = {"server": {"host": "127.0.0.1", "port": 0, "data_dir": str(tmp_path)}}
    extra = tomllib.loads(
        """
        [server]
        max_body_bytes = 2048
        [[environments]]
        id = "gpu"
        gpu_devices = ["0", "1"]
        algorithm_network = true
        [[algorithms]]
        did = "did:op:aa"
        rawcode = "echo \\"quoted\\"\\n"
        container = { image = "busybox", entrypoint = "sh $ALGO" }
        """
    )
    merged = merge(base, extra)
    assert merged["server"] == {**base["server"], "max_body_bytes": 2048}
    text = to_toml(merged)
    assert tomllib.loads(text) == merged
    settings = parse_settings(tomllib.loads(text), "test")
    assert settings.server.port == 0 and settings.environments[0].gpu_devices == ["0", "1"]
    assert settings.algorithms[0].rawcode == 'echo "quoted"\n'


INI = """
[provider]
dataset_roots = ["data"]
[[datasets]]
did = "did:op:sales"
files = ["data/sales.csv", "https://example.com/x.csv", "/abs/y.csv", "~/z.csv"]
ddo = "data/ddo.json"
"""


def test_relative_paths_of_the_ini_option_are_the_ini_files_folders(tmp_path: Path) -> None:
    project, rootdir = tmp_path / "project", tmp_path / "elsewhere"
    config = session_config(INI, project / "pyproject.toml", rootdir, {})
    assert config["provider"]["dataset_roots"] == [str(project / "data")]
    dataset = config["datasets"][0]
    assert dataset["files"] == [
        str(project / "data/sales.csv"),
        "https://example.com/x.csv",
        "/abs/y.csv",
        str(Path.home() / "z.csv"),
    ]
    assert dataset["ddo"] == str(project / "data/ddo.json")
    # No ini file: the rootdir.
    assert session_config(INI, None, rootdir, {})["provider"]["dataset_roots"] == [
        str(rootdir / "data")
    ]


def test_relative_paths_of_the_fixtures_configuration_are_the_rootdirs(tmp_path: Path) -> None:
    project, rootdir = tmp_path / "project", tmp_path / "rootdir"
    given = {
        "provider": {"dataset_roots": [Path("more")]},
        "datasets": [{"did": "d", "files": ["more/a.csv"]}],
    }
    config = session_config(INI, project / "pytest.ini", rootdir, given)
    # The fixture's tables go over the ini option's, key by key.
    assert config["provider"]["dataset_roots"] == [str(rootdir / "more")]
    assert config["datasets"] == [{"did": "d", "files": [str(rootdir / "more/a.csv")]}]
    assert given["datasets"] == [{"did": "d", "files": ["more/a.csv"]}]  # the caller's is kept
    as_toml = session_config("", None, rootdir, '[server]\ndata_dir = "var"\n')
    assert as_toml["server"]["data_dir"] == str(rootdir / "var")


def test_an_ini_option_that_is_not_toml_fails_naming_the_option(tmp_path: Path) -> None:
    ini = tmp_path / "pyproject.toml"
    with pytest.raises(pytest.fail.Exception) as failed:
        session_config("[[environments]\nid = 1", ini, tmp_path, {})
    assert str(failed.value).startswith(
        f"the localcompute_config ini option ({ini}) is not valid TOML: "
    )


@pytest.mark.parametrize(
    ("log", "cause"),
    [
        (
            "2026-12-01 20:49:24,381 INFO localcompute: configuration c.toml\n"
            "localcompute: datasets[0] (did:op:x): local file /p/data/sales.csv does not exist\n",
            "datasets[0] (did:op:x): local file /p/data/sales.csv does not exist",
        ),
        (
            "localcompute: invalid configuration:\n"
            "  /t/localcompute.toml: datasets[0] file /p/a.csv is not under any dataset_roots\n",
            "invalid configuration: /t/localcompute.toml: datasets[0] file /p/a.csv is not "
            "under any dataset_roots",
        ),
        (
            "localcompute: invalid configuration:\n  a: x\n  b: y\n",
            "invalid configuration:\n  a: x\n  b: y",
        ),
        (
            "2026-12-01 INFO localcompute.engine.api: pool: 2 cores\n"
            "localcompute: the Docker engine does not answer: Connection aborted.\n",
            "the Docker engine does not answer: Connection aborted.",
        ),
        (
            "Traceback (most recent call last):\n  File x\nRuntimeError: boom\n",
            "RuntimeError: boom",
        ),
        ("", None),
    ],
)
def test_the_reason_a_server_did_not_start_is_the_one_it_gave(log: str, cause: str | None) -> None:
    assert start_error(log) == cause
