"""docker-py's connection over the engine's unix socket, made to close a refused socket.

docker-py 7.2 opens the socket and connects without closing it when the connection fails
(docker/docker-py#3356, open): while the engine is down or restarting, every call would
leave a file descriptor open, held by the error's traceback until the process ends (or a
garbage collection, in some later test, reports it as a ResourceWarning). DockerRuntime
installs this once, when it opens.
"""

from __future__ import annotations

import socket
from typing import Any

import docker.transport.unixconn


def connect(self: Any) -> None:
    """UnixHTTPConnection.connect as docker-py has it, but for the close on failure."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(self.timeout)
        sock.connect(self.unix_socket)
    except BaseException:
        sock.close()
        raise
    self.sock = sock


def close_refused_sockets() -> None:
    """Install `connect` (again is a no-op)."""
    docker.transport.unixconn.UnixHTTPConnection.connect = connect  # type: ignore[method-assign]
