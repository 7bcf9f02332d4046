"""The client for code without an event loop: each call blocks until it is answered."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from localcompute.client.models import RemoteJob, RemoteResult
from localcompute.client.provider import Client
from localcompute.core.signing import Key

T = TypeVar("T")


class SyncClient:
    """`Client`, blocking: it runs its own event loop, so use it from one thread."""

    def __init__(self, url: str, key: Key | None = None, *, timeout: float = 60) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = Client(url, key, timeout=timeout)

    def __repr__(self) -> str:
        return f"<SyncClient {self.url} as {self.address}>"

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._loop.is_closed():
            self._run(self._client.close())
            self._loop.close()

    def _run(self, awaitable: Awaitable[T]) -> T:
        return self._loop.run_until_complete(awaitable)

    @property
    def url(self) -> str:
        return self._client.url

    @property
    def address(self) -> str:
        return self._client.address

    @property
    def key(self) -> Key:
        return self._client.key

    def environments(self) -> list[dict[str, Any]]:
        return self._run(self._client.environments())

    def start(self, datasets: list[str], **algorithm: Any) -> RemoteJob:
        return self._run(self._client.start(datasets, **algorithm))

    def jobs(self) -> list[RemoteJob]:
        return self._run(self._client.jobs())

    def status(self, job_id: str) -> RemoteJob:
        return self._run(self._client.status(job_id))

    def wait(
        self,
        job_id: str,
        *,
        on_status: Callable[[RemoteJob], None] | None = None,
        poll: float = 0.25,
        max_wait: float | None = None,
    ) -> RemoteJob:
        return self._run(
            self._client.wait(job_id, on_status=on_status, poll=poll, max_wait=max_wait)
        )

    def logs(self, job_id: str, *, poll: float = 0.25) -> Iterator[str]:
        lines = self._client.logs(job_id, poll=poll)
        try:
            while True:
                try:
                    yield self._run(lines.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self._run(lines.aclose())

    def results(self, job_id: str) -> list[RemoteResult]:
        return self._run(self._client.results(job_id))

    def download(self, job_id: str, which: int | str, dest: Path, *, resume: bool = True) -> Path:
        return self._run(self._client.download(job_id, which, dest, resume=resume))

    def stop(self, job_id: str) -> RemoteJob:
        return self._run(self._client.stop(job_id))

    def delete(self, job_id: str) -> RemoteJob:
        return self._run(self._client.delete(job_id))
