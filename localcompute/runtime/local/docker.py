"""The only module that imports docker: the ContainerRuntime of a local Docker engine.

docker-py blocks, so every call leaves the event loop: short calls (create,
start, inspect, remove) go through a bounded thread pool; calls that last as long
as a container or a download (wait, pull, logs, build, import) run on daemon
threads bounded by a semaphore, so that a server can exit while jobs run on and
be re-attached to them later. "Not found" on stop or remove counts as done.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import docker
import docker.errors
import docker.types
import requests.exceptions
import urllib3.exceptions

from localcompute.core.errors import (
    ContainerError,
    DockerUnavailableError,
    ImageNotFoundError,
    LocalComputeError,
)
from localcompute.runtime import (
    LABEL_INSTANCE,
    LABEL_JOB,
    LABEL_STAGE,
    ContainerExit,
    ContainerInfo,
    ContainerSpec,
    ContainerState,
    Network,
    NodeResources,
)
from localcompute.runtime.local import disk
from localcompute.runtime.local.hostinfo import host_resources
from localcompute.runtime.local.unixconn import close_refused_sockets
from localcompute.runtime.logfile import write_capped
from localcompute.runtime.pump import pumped
from localcompute.runtime.quota import DiskQuota

log = logging.getLogger(__name__)
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


def _epoch(docker_time: str | None) -> float | None:
    """Docker's RFC 3339 times with nanoseconds; the zero time means never."""
    if not docker_time or docker_time.startswith("0001-"):
        return None
    head, _, frac = docker_time.rstrip("Z").partition(".")
    stamp = datetime.fromisoformat(head + "+00:00").timestamp()
    return stamp + (float("0." + frac[:6]) if frac else 0.0)


def create_kwargs(spec: ContainerSpec, api: Any, network_mode: str = "none") -> dict[str, Any]:
    """The arguments of APIClient.create_container for `spec`: limits and hardening included.
    `network_mode`: Docker's network for the spec's Network."""
    device_requests = []
    if spec.gpu_device_ids and spec.gpu_driver == "cdi":
        # CDI names the devices; Docker refuses a count or capabilities with it.
        device_requests.append(
            docker.types.DeviceRequest(driver="cdi", device_ids=list(spec.gpu_device_ids))
        )
    elif spec.gpu_device_ids:
        device_requests.append(
            docker.types.DeviceRequest(device_ids=list(spec.gpu_device_ids), capabilities=[["gpu"]])
        )
    elif spec.gpu_count:
        device_requests.append(
            docker.types.DeviceRequest(count=spec.gpu_count, capabilities=[["gpu"]])
        )
    host_config = api.create_host_config(
        mounts=[
            docker.types.Mount(m.target, str(m.source), type="bind", read_only=m.read_only)
            for m in spec.mounts
        ],
        network_mode=network_mode,
        nano_cpus=spec.nano_cpus,
        cpuset_cpus=spec.cpuset_cpus,
        mem_limit=spec.memory_bytes,
        # Equal to the memory limit: no swap, so the limit is real.
        memswap_limit=spec.memory_bytes,
        pids_limit=spec.pids_limit,
        device_requests=device_requests or None,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        # An init process forwards SIGTERM and reaps zombies: `sh -c` as PID 1 would not.
        init=True,
        # Docker keeps two files of the full cap: a live reader that lags while the
        # container floods its output still gets the first cap bytes (so the cut and
        # its marker land where they should) before rotation drops the oldest file.
        log_config=docker.types.LogConfig(
            type="json-file",
            config={"max-size": str(max(spec.log_max_bytes, 1024)), "max-file": "2"},
        ),
    )
    return {
        "image": spec.image,
        "command": spec.command,
        "name": spec.name,
        "labels": dict(spec.labels),
        "environment": dict(spec.environment),
        "entrypoint": spec.entrypoint,
        "user": spec.user,
        "working_dir": spec.working_dir,
        "host_config": host_config,
        "detach": True,
    }


def docker_networks(
    has_bridge: bool, fetch_network: Literal["auto", "bridge", "host"]
) -> dict[Network, str]:
    """Docker's network mode for each Network. Out to the world goes through the bridge
    where the engine has one: the host's network would reach the host's own services too.
    The fetch may be told which (an engine without a bridge has only the host's)."""
    egress = "bridge" if has_bridge else "host"
    return {
        Network.NONE: "none",
        Network.EGRESS: egress,
        Network.FETCH: egress if fetch_network == "auto" else fetch_network,
        # The filter's results are on this host's disk: it needs no network.
        Network.SERVER: "none",
    }


class DockerRuntime:
    """Containers and images of one Docker engine, awaited without blocking the loop."""

    def __init__(
        self,
        *,
        short_workers: int = 8,
        long_workers: int = 8,
        fetch_network: Literal["auto", "bridge", "host"] = "auto",
        base_url: str | None = None,
    ) -> None:
        # The engine's API: DOCKER_HOST's (or the default socket) unless told.
        self._base_url = base_url or _base_url()
        self._errors: collections.Counter[str] = collections.Counter()
        self._fetch_network = fetch_network
        # Docker's network for each Network, known once the engine answers (open).
        self._networks = docker_networks(False, fetch_network)
        self._short_workers = short_workers
        self._long_workers = long_workers
        self._long_slots = asyncio.Semaphore(long_workers)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._api: Any = None  # short calls, with a timeout
        self._long_api: Any = None  # wait, pull, logs: no timeout
        self._pulls: dict[str, asyncio.Task[None]] = {}

    # -- lifecycle ----------------------------------------------------------

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
            has_bridge = await self._has_network("bridge")
            self._networks = docker_networks(has_bridge, self._fetch_network)
        except DockerUnavailableError:
            await self.close()
            raise

    async def close(self) -> None:
        for task in self._pulls.values():
            task.cancel()
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

    # -- plumbing -----------------------------------------------------------

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

    # -- images -------------------------------------------------------------

    async def image_exists(self, ref: str) -> bool:
        try:
            await self._short(lambda: self._api.inspect_image(ref))
            return True
        except ImageNotFoundError:
            return False

    async def image_labels(self, ref: str) -> dict[str, str] | None:
        try:
            info = await self._short(lambda: self._api.inspect_image(ref))
        except ImageNotFoundError:
            return None
        return dict((info.get("Config") or {}).get("Labels") or {})

    async def ensure_image(self, ref: str, pull_policy: str) -> None:
        """Make `ref` present as the policy says; concurrent pulls of one image share one."""
        if pull_policy != "always" and await self.image_exists(ref):
            return
        if pull_policy == "never":
            raise ImageNotFoundError(f"image {ref} is not on this host and pull_policy is 'never'")
        task = self._pulls.get(ref)
        if task is None:
            task = asyncio.ensure_future(self._pull(ref))
            self._pulls[ref] = task
            task.add_done_callback(lambda _: self._pulls.pop(ref, None))
        await asyncio.shield(task)

    async def container_mounts(self, name: str) -> list[tuple[str, str]]:
        """(host source, path inside) of each mount of a container."""
        info = await self._short(lambda: self._api.inspect_container(name))
        return [(m.get("Source", ""), m.get("Destination", "")) for m in info.get("Mounts") or []]

    async def pullable(self, ref: str) -> str | None:
        try:
            await self._short(lambda: self._api.inspect_distribution(ref))
        except DockerUnavailableError:
            raise
        except LocalComputeError as e:  # the registry's refusal, or no way to reach it
            return e.message
        return None

    async def _pull(self, ref: str) -> None:
        def pull() -> None:
            for event in self._long_api.pull(ref, stream=True, decode=True):
                if "error" in event:
                    raise ImageNotFoundError(f"cannot pull image {ref}: {event['error']}")

        try:
            await self._long(pull, f"pull-{ref}")
        except ImageNotFoundError:
            raise
        except LocalComputeError as e:
            raise ImageNotFoundError(f"cannot pull image {ref}: {e.message}") from e

    async def build_image(
        self, context: Path, tag: str, *, buildargs: dict[str, str], labels: dict[str, str]
    ) -> None:
        def build() -> None:
            stream = self._long_api.build(
                path=str(context),
                tag=tag,
                buildargs=buildargs,
                labels=labels,
                rm=True,
                forcerm=True,
                decode=True,
                network_mode="none",
            )
            for event in stream:
                if "error" in event:
                    raise ContainerError(f"building {tag} failed: {event['error'].strip()}")

        await self._long(build, f"build-{tag}")

    async def import_image(self, tarball: Path, tag: str, *, changes: list[str]) -> None:
        repository, _, image_tag = tag.rpartition(":")
        await self._long(
            lambda: self._long_api.import_image_from_file(
                str(tarball), repository=repository, tag=image_tag, changes=changes
            ),
            f"import-{tag}",
        )

    # -- the host ------------------------------------------------------------

    async def resources(self, data_dir: Path) -> list[NodeResources]:
        """This host's: the engine runs here (DOCKER_HOST on another machine would need
        its own measure)."""
        return [await asyncio.to_thread(host_resources, data_dir)]

    async def disk_quota(self, data_dir: Path, wanted: str) -> tuple[DiskQuota, str]:
        return await asyncio.to_thread(disk.choose, data_dir, wanted)

    async def leftover_storage(self, jobs_dir: Path) -> list[Path]:
        return await asyncio.to_thread(disk.mounted_folders, jobs_dir)

    # -- networks -----------------------------------------------------------

    async def _has_network(self, name: str) -> bool:
        networks = await self._short(lambda: self._api.networks(names=[name]))
        return any(n.get("Name") == name for n in networks)

    # -- containers ---------------------------------------------------------

    async def create(self, spec: ContainerSpec) -> None:
        """Create the container; one left over under the same name is removed first."""
        kwargs = create_kwargs(spec, self._api, self._networks[spec.network])
        try:
            await self._short(lambda: self._api.create_container(**kwargs))
        except ContainerError as e:
            if e.details.get("status") != 409:
                raise
            await self.remove(spec.name)
            await self._short(lambda: self._api.create_container(**kwargs))

    async def start(self, name: str) -> None:
        await self._short(lambda: self._api.start(name))

    async def wait(self, name: str) -> ContainerExit:
        """Wait until the container exits; then read its exit code and OOM flag."""
        result = await self._long(lambda: self._long_api.wait(name), f"wait-{name}")
        state = await self._inspect_state(name)
        code = int(result.get("StatusCode", -1))
        return ContainerExit(
            exit_code=code,
            oom_killed=bool(state.get("OOMKilled")),
            started_at=_epoch(state.get("StartedAt")),
            finished_at=_epoch(state.get("FinishedAt")),
        )

    async def state(self, name: str) -> ContainerState:
        try:
            return _state(str((await self._inspect_state(name)).get("Status") or ""))
        except ContainerError as e:
            if e.details.get("status") == 404:
                return ContainerState.MISSING
            raise

    async def _inspect_state(self, name: str) -> dict[str, Any]:
        info = await self._short(lambda: self._api.inspect_container(name))
        return dict(info.get("State") or {})

    async def stop(self, name: str, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds. A container that is gone is stopped."""
        try:
            await self._short(lambda: self._api.stop(name, timeout=max(0, round(grace))))
        except ContainerError as e:
            if e.details.get("status") not in (304, 404, 409):
                raise

    async def remove(self, name: str) -> None:
        try:
            await self._short(lambda: self._api.remove_container(name, force=True, v=True))
        except ContainerError as e:
            if e.details.get("status") not in (404, 409):
                raise

    async def list_labelled(self, instance: str) -> list[ContainerInfo]:
        rows = await self._short(
            lambda: self._api.containers(
                all=True, filters={"label": [f"{LABEL_INSTANCE}={instance}"]}
            )
        )
        return [
            ContainerInfo(
                name=(row.get("Names") or ["/?"])[0].lstrip("/"),
                job_id=row.get("Labels", {}).get(LABEL_JOB, ""),
                stage=row.get("Labels", {}).get(LABEL_STAGE, ""),
                state=_state(str(row.get("State", ""))),
            )
            for row in rows
        ]

    async def follow_logs(self, name: str) -> AsyncIterator[bytes]:
        """docker-py strips Docker's stream framing from a non-TTY container's logs;
        the blocking stream is pumped on a daemon thread (see runtime/pump.py)."""

        def stream() -> Iterator[bytes]:
            chunks: Iterator[bytes] = self._long_api.logs(
                name, stdout=True, stderr=True, stream=True, follow=True
            )
            return chunks

        async for batch in pumped(stream, lambda pump: self._long(pump, f"follow-{name}")):
            yield batch

    async def logs_to_file(self, name: str, path: Path, *, limit: int, append: bool) -> int:
        """Copy the container's stdout and stderr into `path`, at most `limit` bytes."""

        def copy() -> int:
            chunks: Any = self._long_api.logs(
                name, stdout=True, stderr=True, stream=True, follow=False
            )
            try:
                return write_capped(chunks, path, limit=limit, append=append)
            finally:
                chunks.close()  # its socket, even when the engine cut the stream off

        return await self._long(copy, f"logs-{name}")


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


def _state(status: str) -> ContainerState:
    """Docker's Status in the runtime's words: removing and dead are ended containers;
    paused and restarting have not ended."""
    if status == "created":
        return ContainerState.CREATED
    if status in ("running", "paused", "restarting"):
        return ContainerState.RUNNING
    return ContainerState.EXITED
