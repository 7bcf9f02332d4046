"""localcompute as a fixture in other projects' tests: loaded by pytest through the
`pytest11` entry point once localcompute is installed.

Fixtures:

- `localcompute_server` (session): a real server process on a free port, with a
  temporary data folder. Extend its configuration with the `localcompute_config`
  ini option (TOML) or by overriding the `localcompute_config` fixture (a dict, or
  TOML text): environments, datasets, algorithms. It waits until the server
  answers, and on teardown stops it and fails if a job container is left behind.
- `localcompute_client`: a blocking `localcompute.client.SyncClient` with a fresh key.
- `localcompute_factory` (session): `start(config)` for more servers with their own
  configurations; each is stopped at the end of the session.

Nothing is imported from localcompute until a fixture is used.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from localcompute.client import SyncClient

START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0
_LISTENING = re.compile(r"localcompute listening on (\S+)")

Config = dict[str, Any] | str


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
        with sqlite3.connect(self.data_dir / "localcompute.sqlite") as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'instance_id'").fetchone()
        return str(row[0])

    def client(self) -> SyncClient:
        """A blocking client with a fresh key; closed when the server stops."""
        from localcompute.client import Key, SyncClient

        client = SyncClient(self.url, Key.random())
        self.clients.append(client)
        return client

    def stop(self) -> None:
        """SIGTERM, then wait; fail if the server did not stop cleanly or left a container."""
        for client in self.clients:
            client.close()
        instance = self.instance
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                pytest.fail(f"localcompute did not stop within {STOP_TIMEOUT:g} s\n{self._tail()}")
        left = _containers_of(instance)
        if left:
            subprocess.run(["docker", "rm", "-f", *left], capture_output=True)
            pytest.fail(f"localcompute left job containers behind: {left}\n{self._tail()}")
        if self.process.returncode not in (0, -signal.SIGTERM):
            pytest.fail(f"localcompute exited with {self.process.returncode}\n{self._tail()}")

    def _tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "--- the server's log:\n" + "\n".join(text.splitlines()[-lines:])


def start_server(folder: Path, config: Config = "") -> LocalComputeServer:
    """`python -m localcompute serve` on 127.0.0.1, port 0, data in `folder`; once it answers."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = _merge(
        {"server": {"host": "127.0.0.1", "port": 0, "data_dir": str(folder / "var")}},
        _as_dict(config),
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
    if process.poll() is None:
        process.kill()
        process.wait()
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
    pytest.fail(f"localcompute did not start (is Docker running?)\n{tail}", pytrace=False)


def _containers_of(instance: str) -> list[str]:
    done = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=localcompute.instance={instance}"],
        capture_output=True,
        text=True,
    )
    return done.stdout.split()


def _as_dict(config: Config) -> dict[str, Any]:
    return tomllib.loads(config) if isinstance(config, str) else dict(config)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` over `base`: tables merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def to_toml(data: dict[str, Any]) -> str:
    """The configuration as TOML: tables, arrays of tables, and plain values."""
    lines: list[str] = []
    for key, value in data.items():
        if not isinstance(value, dict | list) or (
            isinstance(value, list) and not all(isinstance(v, dict) for v in value)
        ):
            lines.append(f"{key} = {_value(value)}")
    for key, value in data.items():
        if isinstance(value, dict):
            lines += ["", f"[{key}]"] + [f"{k} = {_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                lines += ["", f"[[{key}]]"] + [f"{k} = {_value(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


@pytest.fixture(scope="session")
def localcompute_config() -> Config:
    """Override in a conftest.py to configure the session's server (a dict or TOML)."""
    return {}


@pytest.fixture(scope="session")
def localcompute_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[Config], LocalComputeServer]]:
    servers: list[LocalComputeServer] = []

    def start(config: Config = "") -> LocalComputeServer:
        server = start_server(tmp_path_factory.mktemp("localcompute"), config)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def localcompute_server(
    localcompute_factory: Callable[[Config], LocalComputeServer],
    localcompute_config: Config,
    pytestconfig: pytest.Config,
) -> LocalComputeServer:
    ini = str(pytestconfig.getini("localcompute_config"))
    return localcompute_factory(_merge(_as_dict(ini), _as_dict(localcompute_config)))


@pytest.fixture
def localcompute_client(localcompute_server: LocalComputeServer) -> Iterator[SyncClient]:
    client = localcompute_server.client()
    yield client
    client.close()
