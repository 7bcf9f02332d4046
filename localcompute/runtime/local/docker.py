"""The ContainerRuntime of a local Docker engine: its images, its containers, the host
as the pool's one node. What a ContainerSpec is in Docker's words is dockerspec.py; how
docker-py's blocking calls leave the event loop, calls.py. "Not found" on stop or remove
counts as done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal

from localcompute.core.errors import (
    ContainerError,
    DockerUnavailableError,
    ImageNotFoundError,
    LocalComputeError,
)
from localcompute.core.provenance import RanImage
from localcompute.runtime import (
    LABEL_INSTANCE,
    LABEL_JOB,
    LABEL_STAGE,
    ContainerExit,
    ContainerInfo,
    ContainerSpec,
    ContainerState,
    NodeResources,
)
from localcompute.runtime.local import disk
from localcompute.runtime.local.calls import DockerCalls
from localcompute.runtime.local.dockerspec import container_state, create_kwargs, docker_networks
from localcompute.runtime.local.hostinfo import host_resources
from localcompute.runtime.logfile import write_capped
from localcompute.runtime.pull import must_pull
from localcompute.runtime.pump import pumped
from localcompute.runtime.quota import DiskQuota
from localcompute.runtime.times import docker_time

log = logging.getLogger(__name__)


class DockerRuntime(DockerCalls):
    """Containers and images of one Docker engine, awaited without blocking the loop."""

    def __init__(
        self,
        *,
        short_workers: int = 8,
        long_workers: int = 8,
        fetch_network: Literal["auto", "bridge", "host"] = "auto",
        base_url: str | None = None,
    ) -> None:
        super().__init__(short_workers=short_workers, long_workers=long_workers, base_url=base_url)
        self._fetch_network = fetch_network
        # Docker's network for each Network, known once the engine answers (open).
        self._networks = docker_networks(False, fetch_network)
        self._pulls: dict[str, asyncio.Task[None]] = {}

    @property
    def shares_host_files(self) -> bool:
        return True  # its bind mounts are this host's folders

    # -- lifecycle ----------------------------------------------------------

    async def open(self) -> None:
        await super().open()
        try:
            has_bridge = await self._has_network("bridge")
        except DockerUnavailableError:
            await self.close()
            raise
        self._networks = docker_networks(has_bridge, self._fetch_network)

    async def close(self) -> None:
        for task in self._pulls.values():
            task.cancel()
        await super().close()

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
        if not await must_pull(self, ref, pull_policy):
            return
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
            started_at=docker_time(state.get("StartedAt")),
            finished_at=docker_time(state.get("FinishedAt")),
        )

    async def ran_image(self, name: str) -> RanImage | None:
        """The container's image id (what it ran, whatever its tag names now) and that
        image's repository digests."""
        try:
            container = await self._short(lambda: self._api.inspect_container(name))
            return await self.image_identity(str(container.get("Image") or ""))
        except ContainerError:
            return None

    async def image_identity(self, ref: str) -> RanImage | None:
        """`ref`'s image by content, as this engine has it; None when it has none."""
        try:
            info = await self._short(lambda: self._api.inspect_image(ref))
        except (ImageNotFoundError, ContainerError):
            return None
        image_id = str(info.get("Id") or "")
        if not image_id.startswith("sha256:"):
            return None
        return RanImage(id=image_id, repo_digests=sorted(info.get("RepoDigests") or []))

    async def state(self, name: str) -> ContainerState:
        try:
            return container_state(str((await self._inspect_state(name)).get("Status") or ""))
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
                state=container_state(str(row.get("State", ""))),
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
