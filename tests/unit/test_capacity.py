"""The pool's capacity: what the runtime measured on its node, capped by [pool]."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from localcompute.core.errors import ConfigError
from localcompute.engine.capacity import capacity
from localcompute.runtime import NodeResources
from tests.conftest import make_settings

GIB = 1024**3
NODE = NodeResources(
    node="",
    cores=(0, 1, 2, 3),
    ram_bytes=16 * GIB,
    disk_bytes=100 * GIB,
    gpus=("0", "1"),
    cpu_model="Test CPU",
)


def settings(pool: dict[str, Any] | None = None, **env: Any) -> Any:
    return make_settings(Path("/var/lc"), pool=pool, environments=[{"id": "e", **env}])


def test_without_a_pool_section_it_is_the_node_whole_and_no_gpu_unless_asked_for() -> None:
    got = capacity(NODE, settings())
    assert (got.cores, got.ram_bytes, got.disk_bytes, got.gpus) == (
        (0, 1, 2, 3),
        16 * GIB,
        100 * GIB,
        (),
    )
    assert capacity(NODE, settings(gpus=1)).gpus == ("0", "1")


def test_the_pool_section_takes_less_than_the_node_has() -> None:
    got = capacity(NODE, settings({"cpus": "1-2", "ram_gb": 4, "disk_gb": 10, "gpus": ["1"]}))
    assert (got.cores, got.ram_bytes, got.disk_bytes, got.gpus) == (
        (1, 2),
        4 * GIB,
        10 * GIB,
        ("1",),
    )
    # Devices an environment names are the pool's when [pool] names none.
    assert capacity(NODE, settings(gpu_devices=["1", "0", "1"])).gpus == ("1", "0")


def test_cores_the_server_may_not_use_are_refused_by_number() -> None:
    with pytest.raises(
        ConfigError, match=r"cores 4-5 are not among those this server may use \(0-3\)"
    ):
        capacity(NODE, settings({"cpus": "2-5"}))
