"""`localcompute run`'s options before anything runs: the limits in the command's own
terms, and which image an algorithm file runs on when none is named."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import pytest

from localcompute.cli import run_local
from localcompute.cli.run_image import choose
from localcompute.cli.run_local import NO_TIME_LIMIT, check_limits
from localcompute.core.errors import ConfigError, ImageNotFoundError
from localcompute.runtime.local import hostinfo

GIB = 1024**3


def options(algorithm: str = "algo.py", **given: Any) -> argparse.Namespace:
    values: dict[str, Any] = {
        "algorithm": Path(algorithm),
        "image": None,
        "tag": None,
        "entrypoint": None,
        "cpu": None,
        "ram_gb": None,
        "gpus": None,
        "max_time": None,
        "network": False,
    }
    return argparse.Namespace(**(values | given))


@pytest.fixture
def two_core_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with 2 cores, 4 GiB and no GPU, whatever this one has."""
    monkeypatch.setattr(hostinfo, "usable_cores", lambda: (0, 1))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(hostinfo, "memory_bytes", lambda: 4 * GIB)
    monkeypatch.setattr(hostinfo, "nvidia_devices", lambda: ())


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"cpu": 4.0}, "--cpu 4: this machine has 2 cores"),
        ({"cpu": 2.5}, "--cpu 2.5: this machine has 2 cores"),
        ({"ram_gb": 8.0}, "--ram-gb 8: this machine has 4.0 GiB of memory"),
        ({"gpus": 1}, "--gpus 1: this machine has no GPUs"),
        ({"cpu": 0.0}, "--cpu 0: give a number above 0"),
        ({"ram_gb": 0.0}, "--ram-gb 0: give a number above 0"),
        ({"ram_gb": -1.0}, "--ram-gb -1: give a number above 0"),
        ({"gpus": -1}, "--gpus -1: give 0 or more"),
        ({"max_time": -5.0}, "--max-time -5: give seconds, or 0 for no limit"),
    ],
)
def test_a_limit_is_refused_in_the_command_s_own_terms(
    two_core_host: None, given: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        check_limits(options(**given))
    assert refused.value.message == says


def test_a_limit_the_machine_has_is_accepted(two_core_host: None) -> None:
    check_limits(options(cpu=2.0, ram_gb=4.0, gpus=0, max_time=0.0))


def test_a_narrower_cpu_affinity_is_named_as_such(
    two_core_host: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    with pytest.raises(ConfigError, match=r"^--cpu 4: this machine lets this command use 2 cores$"):
        check_limits(options(cpu=4.0))


def test_max_time_0_is_no_limit_and_no_option_the_defaults(tmp_path: Path) -> None:
    [env] = run_local._config(options(max_time=0.0), tmp_path, {})["environments"]
    assert env["max_job_duration"] == NO_TIME_LIMIT
    [env] = run_local._config(options(), tmp_path, {})["environments"]
    assert (env["cpu"], env["ram_gb"], env["max_job_duration"]) == (1.0, 2.0, 3600.0)


class Images:
    """A Docker engine's images: those here, and those its registries have."""

    def __init__(self, here: set[str], registry: frozenset[str] = frozenset()) -> None:
        self.here, self.registry = here, registry

    async def image_exists(self, ref: str) -> bool:
        return ref in self.here

    async def pullable(self, ref: str) -> str | None:
        return None if ref in self.registry else "no such host"


async def test_the_default_image_runs_where_it_is_here_or_can_be_pulled() -> None:
    for images in (Images({"python:3.12-slim"}), Images(set(), frozenset({"python:3.12-slim"}))):
        choice = await choose(options(), images)
        assert (choice.container.ref, choice.container.entrypoint) == (
            "python:3.12-slim",
            "python $ALGO",
        )
        assert choice.note is None


@pytest.mark.parametrize(
    ("algorithm", "stand_in", "entrypoint"),
    [
        ("algo.py", "localcompute/python-base:stable", "python3 $ALGO"),
        ("algo.sh", "localcompute/busybox:latest", "sh $ALGO"),
    ],
)
async def test_a_default_that_cannot_be_had_gives_way_to_setup_s_image_and_says_so(
    algorithm: str, stand_in: str, entrypoint: str
) -> None:
    choice = await choose(options(algorithm), Images({stand_in}))
    assert (choice.container.ref, choice.container.entrypoint) == (stand_in, entrypoint)
    assert choice.note is not None and "\n" not in choice.note
    assert choice.note.startswith("cannot pull ") and f"using {stand_in}" in choice.note


async def test_a_named_image_or_tag_is_never_replaced() -> None:
    images = Images({"localcompute/python-base:stable"})
    for given, ref in (
        ({"image": "python"}, "python:3.12-slim"),
        ({"tag": "3.11-slim"}, "python:3.11-slim"),
        ({"image": "localcompute/python-base:stable"}, "localcompute/python-base:stable"),
        ({"image": "my/img"}, "my/img:latest"),
        ({"image": "registry:5000/img"}, "registry:5000/img:latest"),
    ):
        choice = await choose(options(**given), images)
        assert (choice.container.ref, choice.note) == (ref, None)


async def test_without_a_stand_in_the_refusal_says_what_to_do() -> None:
    with pytest.raises(ImageNotFoundError) as js:
        await choose(options("algo.js"), Images(set()))
    assert js.value.message.startswith("node:20-slim is not on this host and cannot be pulled")
    assert "docker load" in js.value.message and "--image" in js.value.message
    with pytest.raises(ImageNotFoundError) as py:
        await choose(options("algo.py"), Images(set()))
    assert "localcompute/python-base:stable is missing too" in py.value.message
    assert "scripts/run setup" in py.value.message


async def test_with_a_server_the_default_is_sent_as_it_is() -> None:
    choice = await choose(options("algo.sh"), None)
    assert (choice.container.ref, choice.note) == ("busybox:latest", None)


async def test_a_file_without_a_default_needs_image_and_entrypoint() -> None:
    with pytest.raises(ConfigError, match="--image and --entrypoint"):
        await choose(options("algo.xyz"), Images(set()))
    choice = await choose(options("algo.xyz", image="alpine", entrypoint="sh $ALGO"), None)
    assert choice.container.ref == "alpine:latest"
