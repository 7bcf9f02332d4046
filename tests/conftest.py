"""Fixtures shared by every layer of tests."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from localcompute.core.settings import (
    DockerSettings,
    EnvironmentSettings,
    PoolSettings,
    ServerSettings,
    Settings,
)
from tests.gates import Gates

BUSYBOX_IMAGE = "localcompute/busybox:latest"
LABEL_INSTANCE = "localcompute.instance"
# The instances this test session started: only their containers are its business,
# so two test sessions on one Docker engine leave each other alone.
STARTED_INSTANCES: set[str] = set()


def make_settings(
    data_dir: Path,
    *,
    environments: list[dict[str, Any]] | None = None,
    pool: dict[str, Any] | None = None,
    **docker: Any,
) -> Settings:
    """Settings for a test: its own data folder, host-network fetches, no pulls."""
    envs = environments or [{"id": "test", "max_jobs": 2, "max_job_duration": 120}]
    # The server's own sweep, which tests shorten, is a [server] key.
    sweep = (
        {"reconcile_interval": docker.pop("reconcile_interval")}
        if "reconcile_interval" in docker
        else {}
    )
    return Settings(
        pool=PoolSettings(**(pool or {})),
        server=ServerSettings(host="127.0.0.1", port=0, data_dir=data_dir, **sweep),
        docker=DockerSettings(
            **{"pull_policy": "never", "fetch_network": "host", "stop_grace": 2, **docker}
        ),
        environments=[EnvironmentSettings(**env) for env in envs],
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


class FileServer:
    """A real HTTP server on 127.0.0.1 that serves test inputs and algorithms."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.delays: dict[str, float] = {}  # name → seconds before it is answered
        self.base_url = ""

    def add(self, name: str, body: bytes | str) -> str:
        self.files[name] = body.encode() if isinstance(body, str) else body
        return f"{self.base_url}/{name}"

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.requests.append(name)
        if name in self.delays:
            await asyncio.sleep(self.delays[name])
        if name not in self.files:
            return web.Response(status=404, text="not found")
        return web.Response(body=self.files[name])


@contextlib.asynccontextmanager
async def serving_files() -> AsyncIterator[FileServer]:
    """A FileServer listening on 127.0.0.1 (a free port) until the block ends."""
    server = FileServer()
    app = web.Application()
    app.router.add_get("/{name:.+}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    server.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield server
    finally:
        await runner.cleanup()


@pytest.fixture
async def file_server() -> AsyncIterator[FileServer]:
    async with serving_files() as server:
        yield server


@pytest.fixture
def gates(tmp_path: Path) -> Iterator[Gates]:
    """Makes the test's gates (tests/gates.py); any left shut are released at its end."""
    made = Gates(tmp_path)
    yield made
    made.release()


def docker_ps(*filters: str) -> list[str]:
    args = ["docker", "ps", "-aq"] + [a for f in filters for a in ("--filter", f)]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return out.split()


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A Docker engine must answer: a Docker test fails, never skips, without one."""
    if shutil.which("docker") is None:
        pytest.fail("the docker CLI is missing: run the tests through scripts/run test")
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.fail(f"the Docker engine does not answer (run scripts/run test): {probe.stderr}")


def ensure_busybox_image() -> None:
    """Import BUSYBOX_IMAGE from the host's busybox-static unless the engine has it."""
    exists = subprocess.run(["docker", "image", "inspect", BUSYBOX_IMAGE], capture_output=True)
    if exists.returncode == 0:
        return
    from localcompute.images import import_busybox
    from localcompute.runtime.local.docker import DockerRuntime

    async def make() -> None:
        runtime = DockerRuntime()
        await runtime.open()
        try:
            await import_busybox(runtime, BUSYBOX_IMAGE)
        finally:
            await runtime.close()

    asyncio.run(make())


@pytest.fixture(scope="session")
def busybox_image(docker_engine: None) -> str:
    """A tiny image from the host's busybox-static, made once and kept between runs."""
    ensure_busybox_image()
    return BUSYBOX_IMAGE


@pytest.fixture(scope="session", autouse=True)
def no_container_left_behind() -> Iterator[None]:
    """After the whole run no container of this session's engines may remain."""
    yield
    left = [c for i in sorted(STARTED_INSTANCES) for c in docker_ps(f"label={LABEL_INSTANCE}={i}")]
    if left:
        subprocess.run(["docker", "rm", "-f", *left], capture_output=True)
        pytest.fail(f"{len(left)} labelled containers were left behind: {left}")


def mounts_under(folder: Path) -> list[str]:
    """Mount points at or below `folder` (a job's loop-mounted data, say)."""
    inside = str(folder.resolve())
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        points = [line.split()[4].replace("\\040", " ") for line in f]
    return [p for p in points if p == inside or p.startswith(inside + "/")]


@pytest.fixture(scope="session", autouse=True)
def no_mount_left_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the whole run no job disk of this session may still be mounted: an engine
    releases a job's disk when the job ends, and a test that leaves one behind fails
    the run (its mounts are released, so pytest can remove its temporary folders)."""
    yield
    left = mounts_under(tmp_path_factory.getbasetemp())
    for point in sorted(left, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
    if left:
        pytest.fail(f"{len(left)} job disks were left mounted: {left}")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


AsyncFactory = Callable[..., Awaitable[Any]]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test, so fixtures can tell that the test failed."""
    outcome = yield
    setattr(item, f"report_{call.when}", outcome.get_result())
