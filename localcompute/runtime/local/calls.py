"""docker-py off the event loop: short calls (create, start, inspect, remove) through a
bounded thread pool, each with a timeout; calls that last as long as a container or a
download (wait, pull, logs, build, import) on daemon threads bounded by a semaphore, so
that a server can exit while jobs run on and be re-attached to them later. Docker's
errors become the project's (ContainerError, ImageNotFoundError, DockerUnavailableError).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
import urllib3.exceptions

from localcompute.core.errors import (
    ContainerError,
    DockerUnavailableError,
    ImageNotFoundError,
    LocalComputeError,
)
from localcompute.runtime.local.unixconn import close_refused_sockets

T = TypeVar("T")

# What a call to the engine raises when the engine fails it or goes away: a refused
# connection, or a stream (wait, logs, pull) cut off midway when dockerd dies.
_ENGINE_ERRORS = (
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    docker.errors.DockerException,
)

SHORT_CALL_TIMEOUT = 60
# docker-py passes the timeout to requests, where None means no limit: for wait,
# pull and logs, which last as long as a container or a download.
NO_TIMEOUT: Any = None


class DockerCalls:
    """One engine's API clients and the threads their calls run on."""

    def __init__(self, *, short_workers: int, long_workers: int, base_url: str | None) -> None:
        # The engine's API: DOCKER_HOST's (or the default socket) unless told.
        self._base_url = base_url or _base_url()
        self._errors: collections.Counter[str] = collections.Counter()
        self._short_workers = short_workers
        self._long_workers = long_workers
        self._long_slots = asyncio.Semaphore(long_workers)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._api: Any = None  # short calls, with a timeout
        self._long_api: Any = None  # wait, pull, logs: no timeout

    async def open(self) -> None:
        close_refused_sockets()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self._short_workers, thread_name_prefix="docker"
        )
        try:
            # A connection per thread that may call at once: with fewer, urllib3 drops
            # the spare ones and every call past the pool's size opens a new socket.
            self._api = await self._short(
                lambda: docker.APIClient(
                    base_url=self._base_url,
                    version="auto",
                    timeout=SHORT_CALL_TIMEOUT,
                    max_pool_size=self._short_workers,
                )
            )
            self._long_api = await self._short(
                lambda: docker.APIClient(
                    base_url=self._base_url,
                    version="auto",
                    timeout=NO_TIMEOUT,
                    max_pool_size=self._long_workers,
                )
            )
        except DockerUnavailableError:
            await self.close()
            raise

    async def close(self) -> None:
        for api in (self._api, self._long_api):
            if api is not None:
                api.close()
        self._api = self._long_api = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    @property
    def errors(self) -> dict[str, int]:
        return dict(self._errors)

    async def ping(self) -> bool:
        try:
            return bool(await self._short(lambda: self._api.ping()))
        except LocalComputeError:
            return False

    async def _short(self, call: Callable[[], T]) -> T:
        if self._pool is None:
            raise DockerUnavailableError("the Docker runtime is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, call)
        except _ENGINE_ERRORS as e:
            error = _translate(e)
            self._errors[type(error).__name__] += 1
            raise error from e

    async def _long(self, call: Callable[[], T], name: str) -> T:
        """Run `call` on a daemon thread: it may block for as long as a container runs."""
        async with self._long_slots:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[T] = loop.create_future()

            def deliver(ok: bool, value: Any) -> None:
                if future.done():
                    return
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

            def runner() -> None:
                try:
                    result: Any = call()
                    ok = True
                except BaseException as e:  # handed to the awaiting coroutine
                    result, ok = e, False
                # RuntimeError: the loop is gone, so nobody waits for this any more.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(deliver, ok, result)

            threading.Thread(target=runner, name=f"docker-{name}", daemon=True).start()
            try:
                return await future
            except _ENGINE_ERRORS as e:
                error = _translate(e)
                self._errors[type(error).__name__] += 1
                raise error from e


def _base_url() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def _translate(e: Exception) -> LocalComputeError:
    if isinstance(e, docker.errors.ImageNotFound):
        return ImageNotFoundError(str(e.explanation or e))
    if isinstance(e, docker.errors.APIError):
        status = e.status_code
        if status == 404 and "image" in str(e.explanation or "").lower():
            return ImageNotFoundError(str(e.explanation or e), status=status)
        return ContainerError(str(e.explanation or e), status=status)
    return DockerUnavailableError(f"the Docker engine does not answer: {e}")
