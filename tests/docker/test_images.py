"""The images localcompute makes, against the real Docker engine.

Every image made here has a unique throwaway tag and is removed afterwards; only
the Python base image is kept, because making it with debootstrap takes minutes.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from localcompute import images
from localcompute.core.errors import ConfigError
from localcompute.core.settings import DockerSettings
from localcompute.runtime.local.docker import DockerRuntime

pytestmark = pytest.mark.docker

# Longer than the default: the first test to need the base image may have to make it.
BASE_TIMEOUT = 1200
TEMP_PREFIXES = ("localcompute-helper-", "localcompute-busybox-", "localcompute-base-")


async def docker_cli(*args: str) -> tuple[int, str]:
    """Run the docker CLI; its exit code and its stdout and stderr together."""
    proc = await asyncio.create_subprocess_exec(
        "docker",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def docker_run(image: str, *command: str, user: str | None = None) -> str:
    user_args = ["--user", user] if user else []
    code, out = await docker_cli("run", "--rm", "--network", "none", *user_args, image, *command)
    assert code == 0, out
    return out


async def image_id(ref: str) -> str:
    code, out = await docker_cli("image", "inspect", "-f", "{{.Id}}", ref)
    assert code == 0, out
    return out.strip()


def _image_exists(ref: str) -> bool:
    return (
        subprocess.run(
            ["docker", "image", "inspect", ref], capture_output=True, check=False
        ).returncode
        == 0
    )


class Throwaway:
    """Unique image tags, and images left untagged, removed when the test ends."""

    def __init__(self) -> None:
        self.refs: list[str] = []
        self.untagged: list[str] = []

    def tag(self, name: str) -> str:
        ref = f"localcompute-test/{name}:{uuid.uuid4().hex[:12]}"
        self.refs.append(ref)
        return ref

    def remove(self) -> None:
        for ref in self.refs:
            subprocess.run(["docker", "rmi", "-f", ref], capture_output=True, check=False)
        # By id only once no tag names it: the build cache can make an image identical to
        # (the same id as) one another tag names, such as localcompute/helper:latest.
        for image in self.untagged:
            tags = subprocess.run(
                ["docker", "image", "inspect", "-f", "{{len .RepoTags}}", image],
                capture_output=True,
                text=True,
                check=False,
            )
            if tags.returncode == 0 and tags.stdout.strip() == "0":
                subprocess.run(["docker", "rmi", image], capture_output=True, check=False)


@pytest.fixture
def throwaway() -> Iterator[Throwaway]:
    images_made = Throwaway()
    yield images_made
    images_made.remove()


@pytest.fixture(autouse=True)
def no_temp_dirs_left() -> Iterator[None]:
    tmp = Path(tempfile.gettempdir())

    def ours() -> set[str]:
        return {p.name for p in tmp.iterdir() if p.name.startswith(TEMP_PREFIXES)}

    before = ours()
    yield
    assert ours() - before == set(), "images.py left temporary folders behind"


@pytest.fixture
async def runtime() -> AsyncIterator[DockerRuntime]:
    rt = DockerRuntime()
    await rt.open()
    try:
        yield rt
    finally:
        await rt.close()


@pytest.fixture(scope="session")
def python_base() -> str:
    """A Python base image on this host: the bootstrapped one, made once if it is missing."""
    if not _image_exists(images.BOOTSTRAP_TAG):

        async def make() -> None:
            rt = DockerRuntime()
            await rt.open()
            try:
                await images.bootstrap_base(rt, images.BOOTSTRAP_TAG)
            finally:
                await rt.close()

        asyncio.run(make())
    assert _image_exists(images.BOOTSTRAP_TAG)
    return images.BOOTSTRAP_TAG


# -- busybox ------------------------------------------------------------------


async def test_import_busybox_runs_a_shell(runtime: DockerRuntime, throwaway: Throwaway) -> None:
    tag = throwaway.tag("busybox")
    await images.import_busybox(runtime, tag)

    assert await docker_run(tag, "busybox", "sh", "-c", "echo ok") == "ok\n"
    # PATH=/bin reaches the applet links; uid 1000 has a name and may write to /tmp.
    out = await docker_run(tag, "sh", "-c", "id -un; touch /tmp/x && echo wrote", user="1000:1000")
    assert out.split() == ["user", "wrote"]


@pytest.fixture
def dynamic_binary() -> Path:
    return Path("/bin/ls") if Path("/bin/ls").exists() else Path(sys.executable)


async def test_import_busybox_refuses_a_dynamic_binary(
    runtime: DockerRuntime, throwaway: Throwaway, dynamic_binary: Path
) -> None:
    tag = throwaway.tag("busybox-dynamic")
    with pytest.raises(ConfigError, match="busybox-static"):
        await images.import_busybox(runtime, tag, busybox=dynamic_binary)
    assert not await runtime.image_exists(tag)


# -- helper image -------------------------------------------------------------

HELPER_LISTING = (
    "import os, sys; "
    "print(sorted(os.listdir('/opt/localcompute/helper'))); "
    "print(os.path.isfile('/opt/localcompute/helper/fetch.py')); "
    "print(sorted(n.split('.')[0] for n in os.listdir('/opt/localcompute/helper/__pycache__'))); "
    "print(os.environ.get('PYTHONDONTWRITEBYTECODE'), os.environ.get('PYTHONUNBUFFERED'))"
)


@pytest.mark.timeout(BASE_TIMEOUT)
async def test_build_helper_image(
    runtime: DockerRuntime, throwaway: Throwaway, python_base: str
) -> None:
    tag = throwaway.tag("helper")
    await images.build_helper_image(runtime, tag, python_base)

    labels = await runtime.image_labels(tag)
    assert labels is not None
    assert labels[images.LABEL_DIGEST] == images.helper_digest()
    assert labels[images.LABEL_BASE] == python_base
    out = await docker_run(tag, "python3", "-c", HELPER_LISTING, user="1000:1000")
    sources = sorted(p.name for p in images.HELPER_SOURCES.glob("*.py"))
    # The image carries each module's bytecode, compiled when it was built, so no
    # helper container spends its start-up compiling (and none can write there).
    compiled = sorted(name.removesuffix(".py") for name in sources)
    listing = sorted([*sources, "__pycache__"])
    assert out.splitlines() == [repr(listing), "True", repr(compiled), "1 1"]
    fetch = await docker_run(tag, "cat", "/opt/localcompute/helper/fetch.py")
    assert fetch == (images.HELPER_SOURCES / "fetch.py").read_text()


async def test_build_helper_image_without_base_names_the_commands(
    runtime: DockerRuntime, throwaway: Throwaway
) -> None:
    base = throwaway.tag("no-such-base")
    tag = throwaway.tag("helper")
    with pytest.raises(ConfigError) as caught:
        await images.build_helper_image(runtime, tag, base)
    assert "localcompute images bootstrap-base" in caught.value.message
    assert f"localcompute images build --base {images.BOOTSTRAP_TAG}" in caught.value.message
    assert not await runtime.image_exists(tag)


async def test_ensure_helper_image_never_and_missing(
    runtime: DockerRuntime, throwaway: Throwaway
) -> None:
    tag = throwaway.tag("helper")
    settings = DockerSettings(helper_image=tag, pull_policy="never")
    with pytest.raises(ConfigError, match="localcompute images build"):
        await images.ensure_helper_image(runtime, settings)
    assert not await runtime.image_exists(tag)


@pytest.mark.timeout(BASE_TIMEOUT)
async def test_ensure_helper_image_keeps_current_and_rebuilds_stale(
    runtime: DockerRuntime,
    throwaway: Throwaway,
    python_base: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tag = throwaway.tag("helper")
    await images.build_helper_image(runtime, tag, python_base)
    first = await image_id(tag)
    throwaway.untagged.append(first)  # untagged once the tag moves on

    # Up to date: nothing happens, whatever the pull policy.
    for policy in ("never", "if-not-present"):
        await images.ensure_helper_image(
            runtime, DockerSettings(helper_image=tag, pull_policy=policy)
        )
        assert await image_id(tag) == first

    # The helper code changed: "never" uses the old image, otherwise it is rebuilt on
    # the base the old image names.
    monkeypatch.setattr(images.helper, "helper_digest", lambda: "0123456789abcdef")
    await images.ensure_helper_image(runtime, DockerSettings(helper_image=tag, pull_policy="never"))
    assert await image_id(tag) == first
    await images.ensure_helper_image(runtime, DockerSettings(helper_image=tag))
    assert await image_id(tag) != first
    labels = await runtime.image_labels(tag)
    assert labels is not None
    assert labels[images.LABEL_DIGEST] == "0123456789abcdef"
    assert labels[images.LABEL_BASE] == python_base


@pytest.mark.timeout(BASE_TIMEOUT)
async def test_ensure_helper_image_builds_a_missing_one(
    runtime: DockerRuntime, throwaway: Throwaway, python_base: str
) -> None:
    tag = throwaway.tag("helper")
    await images.ensure_helper_image(runtime, DockerSettings(helper_image=tag))
    labels = await runtime.image_labels(tag)
    assert labels is not None
    assert labels[images.LABEL_DIGEST] == images.helper_digest()
    # python:3.12-slim when this host has it; without a registry, the bootstrapped base.
    assert labels[images.LABEL_BASE] in (images.DEFAULT_BASE, python_base)


@pytest.mark.timeout(BASE_TIMEOUT)
def test_images_build_without_base_builds_where_the_server_would(
    throwaway: Throwaway, python_base: str
) -> None:
    tag = throwaway.tag("helper")
    done = subprocess.run(
        [sys.executable, "-m", "localcompute", "images", "build", "--tag", tag],
        capture_output=True,
        text=True,
        timeout=BASE_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    # As a server's start-up: python:3.12-slim when this host has it, else the local base.
    if _image_exists(images.DEFAULT_BASE):
        base = images.DEFAULT_BASE
        assert "is not on this host" not in done.stderr
    else:
        base = python_base
        note = f"{images.DEFAULT_BASE} is not on this host: building on {base} "
        assert any(line.startswith(note) for line in done.stderr.splitlines()), done.stderr
    assert done.stdout == f"built {tag} from {base}\n"
    labels = subprocess.run(
        ["docker", "image", "inspect", "-f", '{{index .Config.Labels "localcompute.base"}}', tag],
        capture_output=True,
        text=True,
    )
    assert labels.stdout.strip() == base
