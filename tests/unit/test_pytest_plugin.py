"""The plugin's configuration writing: what a project hands it becomes valid settings."""

from __future__ import annotations

import tomllib
from pathlib import Path

from localcompute.core.settings import parse_settings
from localcompute.pytest_plugin import _merge, to_toml


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
    merged = _merge(base, extra)
    assert merged["server"] == {**base["server"], "max_body_bytes": 2048}
    text = to_toml(merged)
    assert tomllib.loads(text) == merged
    settings = parse_settings(tomllib.loads(text), "test")
    assert settings.server.port == 0 and settings.environments[0].gpu_devices == ["0", "1"]
    assert settings.algorithms[0].rawcode == 'echo "quoted"\n'
