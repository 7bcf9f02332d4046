"""A Docker engine that refuses the connection (restarting, or stopped): the runtime says
so in localcompute's words, and holds no socket afterwards."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import pytest

from localcompute.core.errors import DockerUnavailableError
from localcompute.runtime.local.docker import DockerRuntime


def open_sockets() -> set[str]:
    """This process's open sockets, by inode: others the suite closes meanwhile (a
    collection) do not count, only the ones opened here and left open."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:"):
                found.add(target)
    return found


async def test_a_refused_connection_leaves_no_socket_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A socket file nobody listens on: connecting is refused, as while dockerd restarts.
    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bound:
        bound.bind(str(path))
        monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
        before = open_sockets()
        for _ in range(3):
            runtime = DockerRuntime(short_workers=1, long_workers=1)
            with pytest.raises(DockerUnavailableError, match="does not answer"):
                await runtime.open()
        # docker-py's own connect kept each refused socket open, held by its error's
        # traceback until the process ended (docker/docker-py#3356).
        assert open_sockets() - before == set()
