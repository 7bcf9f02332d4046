"""A service's logs through the manager: the followed stream, which Swarm never ends and
the runtime cuts, and the whole log copied once a task has ended. Blocking calls of
docker-py's APIClient, made in the runtime's worker threads.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from localcompute.runtime.logfile import write_capped


class ServiceLogStream:
    """One service's followed log stream: `open` (in a worker thread) reads it; `cut`
    ends a read blocked in that thread; `close` cuts it and lets the response go."""

    def __init__(self, api: Any, name: str) -> None:
        self._api = api
        self._name = name
        self._sock: Any = None
        self._response: Any = None
        self.closed = False

    def open(self) -> Iterator[bytes]:
        api = self._api
        response = api._get(
            api._url("/services/{0}/logs", self._name),
            params={"follow": 1, "stdout": 1, "stderr": 1},
            stream=True,
        )
        api._raise_for_status(response)
        raw = api._get_raw_response_socket(response)
        self._sock, self._response = getattr(raw, "_sock", raw), response
        # Read through the response: it undoes the chunked encoding, then the frames.
        return self._payloads(api._multiplexed_response_stream_helper(response))

    def cut(self) -> None:
        self.closed = True
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """The reading thread may be blocked: the socket is cut first (which wakes it),
        and the response closed in a thread of its own, since closing it waits for that
        read to let go."""
        self.cut()
        if self._response is not None:
            threading.Thread(target=_close_quietly, args=(self._response,), daemon=True).start()

    def _payloads(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """The stream's payloads; a read cut by `cut` ends it."""
        try:
            yield from chunks
        except Exception:  # an OSError or urllib3's "connection broken", as the cut falls
            if not self.closed:
                raise


def copy_service_logs(api: Any, name: str, path: Path, *, limit: int, append: bool) -> int:
    """The service's whole log into `path`, capped at `limit` bytes; the bytes written."""
    chunks: Any = api.service_logs(name, stdout=True, stderr=True, follow=False)
    try:
        return write_capped(chunks, path, limit=limit, append=append)
    finally:
        with contextlib.suppress(Exception):
            chunks.close()


def _close_quietly(response: Any) -> None:
    with contextlib.suppress(Exception):
        response.close()
