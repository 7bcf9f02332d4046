"""localcompute as a fixture in other projects' tests: loaded by pytest through the
`pytest11` entry point once localcompute is installed.

Fixtures:

- `localcompute_server` (session): a real server process on a free port, with a
  temporary data folder. Extend its configuration with the `localcompute_config`
  ini option (TOML) or by overriding the `localcompute_config` fixture (a dict, or
  TOML text): environments, datasets, algorithms. It waits until the server
  answers, and on teardown stops it. A job still running then fails the session:
  its containers, its disk (mount, loop device, image) and its folder are removed.
- `localcompute_client`: a blocking `localcompute.client.SyncClient` with a fresh key.
- `localcompute_factory` (session): `start(config)` for more servers with their own
  configurations; each is stopped at the end of the session.

Relative paths in the ini option are relative to the ini file's folder; in the
fixture's configuration and in `start(config)`, to the rootdir (the project's folder,
where that ini file is): the same text means the same file in either place.

Nothing else of localcompute is imported until a fixture is used.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from localcompute.pytest_config import Config, anchored, as_dict, merge, session_config, to_toml

if TYPE_CHECKING:
    from localcompute.client import SyncClient

START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0
_LISTENING = re.compile(r"localcompute listening on (\S+)")
# How `localcompute serve` starts the line that says why it stopped.
# The command's one-line error: `localcompute serve: …` (localcompute.cli.exits.fail).
_ERROR_LINE = re.compile(r"^localcompute(?: [a-z]+)?: ")
# The labels of job containers (localcompute.runtime's, not imported until needed).
_LABEL_INSTANCE = "localcompute.instance"
_LABEL_JOB = "localcompute.job_id"
# A job id as the engine makes them: a folder name, never a path.
_JOB_ID = re.compile(r"[A-Za-z0-9_-]+")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "localcompute_config",
        "TOML merged into the configuration of the localcompute_server fixture",
        default="",
    )


@dataclass
class LocalComputeServer:
    """A localcompute server process started for tests."""

    url: str
    data_dir: Path
    config: Path
    process: subprocess.Popen[str]
    log: Path
    clients: list[SyncClient] = field(default_factory=list)

    @property
    def instance(self) -> str:
        """The id its job containers are labelled with (localcompute.instance)."""
        from localcompute.store.readonly import read_instance

        return read_instance(self.data_dir)

    def client(self) -> SyncClient:
        """A blocking client with a fresh key; closed when the server stops."""
        from localcompute.client import Key, SyncClient

        client = SyncClient(self.url, Key.random())
        self.clients.append(client)
        return client

    def stop(self) -> None:
        """SIGTERM, then wait; then remove whatever of a job is left on the host and fail
        if anything was, or if the server did not stop cleanly."""
        for client in self.clients:
            client.close()
        instance = self.instance
        problems: list[str] = []
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                problems.append(f"localcompute did not stop within {STOP_TIMEOUT:g} s")
        if self.process.stdout is not None:
            self.process.stdout.close()
        if not problems and self.process.returncode not in (0, -signal.SIGTERM):
            problems.append(f"localcompute exited with {self.process.returncode}")
        # A server leaves running jobs to be resumed at its next start; none will come.
        problems += remove_jobs_left(instance, self.data_dir)
        if problems:
            pytest.fail("\n".join(problems) + "\n" + self._tail(), pytrace=False)

    def _tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- the server's log ({self.log}):\n" + "\n".join(text.splitlines()[-lines:])


def start_server(
    folder: Path, config: Config = "", *, relative_to: Path | None = None
) -> LocalComputeServer:
    """`python -m localcompute serve` on 127.0.0.1, port 0, data in `folder`; once it answers.
    Relative paths in `config` are relative to `relative_to` (default: the current folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    extra = anchored(as_dict(config, "the localcompute configuration"), relative_to or Path.cwd())
    # The fixture's server answers only this host, and its users' tests poll as fast as
    # they like (a loop without a sleep is a fine test): loopback skips the request
    # buckets unless their configuration says `[limits] exempt_loopback = false`.
    settings = merge(
        {
            "server": {"host": "127.0.0.1", "port": 0, "data_dir": str(folder / "var")},
            "limits": {"exempt_loopback": True},
        },
        extra,
    )
    path = folder / "localcompute.toml"
    path.write_text(to_toml(settings))
    log = folder / "server.log"
    with log.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "localcompute", "serve", "--config", str(path)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=folder,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    url = _await_url(process, log)
    data_dir = Path(settings["server"]["data_dir"])
    return LocalComputeServer(url, data_dir, path, process, log)


def _await_url(process: subprocess.Popen[str], log: Path) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        match = _LISTENING.search(line)
        if match:
            return match.group(1)
    timed_out = process.poll() is None
    if timed_out:
        process.kill()
        process.wait()
    process.stdout.close()
    text = log.read_text(errors="replace")
    if timed_out:
        headline = f"localcompute did not answer within {START_TIMEOUT:g} s"
    else:
        why = start_error(text) or f"it exited with {process.returncode}"
        headline = f"localcompute did not start: {why}"
    tail = "\n".join(text.splitlines()[-40:])
    pytest.fail(f"{headline}\n--- the server's log ({log}):\n{tail}", pytrace=False)


def start_error(log: str) -> str | None:
    """What the server said stopped it, from its log: the command's own error (the last
    `localcompute: …` block, a one-item list put on its line), else an exception's last line."""
    lines = log.rstrip().splitlines()
    for i in range(len(lines) - 1, -1, -1):
        prefix = _ERROR_LINE.match(lines[i])
        if prefix:
            first, rest = lines[i][prefix.end() :], lines[i + 1 :]
            if first.endswith(":") and len(rest) == 1:
                return f"{first} {rest[0].strip()}"
            return "\n".join([first, *rest])
    if any(line.startswith("Traceback") for line in lines):
        return lines[-1]
    return None


def remove_jobs_left(instance: str, data_dir: Path) -> list[str]:
    """Remove what jobs of `instance` left on the host: their containers, then their
    disks (unmounted, so the loop device goes, and the image) and folders. Returns a line
    for each kind of leftover that was there."""
    from localcompute.runtime.folders import remove_tree
    from localcompute.runtime.local.disk import mounted_folders, release_all

    problems: list[str] = []
    containers = _containers_of(instance)
    if containers:
        subprocess.run(["docker", "rm", "-f", *containers], capture_output=True)
        problems.append(f"localcompute left job containers behind: {sorted(containers)}")
    jobs = data_dir / "jobs"
    disks = {folder.parent.name for folder in mounted_folders(jobs)}
    if disks:
        release_all(jobs)
        problems.append(f"localcompute left job disks mounted: {sorted(disks)}")
    for job_id in sorted({j for j in containers.values() if j} | disks):
        folder = jobs / job_id
        if os.path.ismount(folder / "data"):
            problems.append(f"cannot unmount {folder / 'data'}: remove it by hand")
            continue
        try:
            remove_tree(folder)
        except OSError as e:
            problems.append(f"cannot remove {folder}: {e}")
    return problems


def _containers_of(instance: str) -> dict[str, str]:
    """Container id → job id of every container labelled with `instance`."""
    done = subprocess.run(
        [
            "docker",
            "ps",
            "-a",
            "--filter",
            f"label={_LABEL_INSTANCE}={instance}",
            "--format",
            f'{{{{.ID}}}} {{{{.Label "{_LABEL_JOB}"}}}}',
        ],
        capture_output=True,
        text=True,
    )
    found: dict[str, str] = {}
    for line in done.stdout.splitlines():
        cid, _, job_id = line.strip().partition(" ")
        if cid:
            found[cid] = job_id if _JOB_ID.fullmatch(job_id) else ""
    return found


@pytest.fixture(scope="session")
def localcompute_config() -> Config:
    """Override in a conftest.py to configure the session's server (a dict or TOML)."""
    return {}


@pytest.fixture(scope="session")
def localcompute_factory(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[Callable[[Config], LocalComputeServer]]:
    servers: list[LocalComputeServer] = []

    def start(config: Config = "") -> LocalComputeServer:
        folder = tmp_path_factory.mktemp("localcompute")
        server = start_server(folder, config, relative_to=pytestconfig.rootpath)
        servers.append(server)
        return server

    yield start
    # Every server is stopped, and cleaned up after, even when one of them fails.
    failures: list[str] = []
    for server in servers:
        try:
            server.stop()
        except pytest.fail.Exception as e:
            failures.append(str(e))
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)


@pytest.fixture(scope="session")
def localcompute_server(
    localcompute_factory: Callable[[Config], LocalComputeServer],
    localcompute_config: Config,
    pytestconfig: pytest.Config,
) -> LocalComputeServer:
    ini = str(pytestconfig.getini("localcompute_config"))
    config = session_config(ini, pytestconfig.inipath, pytestconfig.rootpath, localcompute_config)
    return localcompute_factory(config)


@pytest.fixture
def localcompute_client(localcompute_server: LocalComputeServer) -> Iterator[SyncClient]:
    client = localcompute_server.client()
    yield client
    client.close()
