"""A ContainerRuntime without Docker, for tests of everything above the runtime.

`FakeRuntime` runs each "container" as a process on this host: the helper programs
(fetch, filter) as they are, and the algorithm as `sh -c`, with every container
path of the spec (argv, variables, the fetch document) turned into the host path
its mount names. So the engine, the store and both HTTP dialects run for real,
fast and without Docker, while what only a container can show (isolation, limits,
the read-only layout, images) stays the business of the Docker tests.

`down = True` makes it behave like an engine that has gone away; `missing_images`
names images that cannot be had.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from localcompute.core.errors import ContainerError, DockerUnavailableError, ImageNotFoundError
from localcompute.core.provenance import RanImage
from localcompute.helper.contract import HELPER_IN_IMAGE
from localcompute.images import LABEL_DIGEST, helper_digest
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
from localcompute.runtime.folders import remove_tree
from localcompute.runtime.hostproc import HELPER_ON_HOST
from localcompute.runtime.local import disk
from localcompute.runtime.local.hostinfo import host_resources
from localcompute.runtime.logfile import write_capped
from localcompute.runtime.quota import DiskQuota


@dataclass
class FakeContainer:
    spec: ContainerSpec
    state: ContainerState = ContainerState.CREATED
    output: bytearray = field(default_factory=bytearray)
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    process: asyncio.subprocess.Process | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    # Set, then replaced by a fresh one, whenever output arrives or the container ends.
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None


class FakeRuntime:
    """Containers as host processes; see the module docstring."""

    def __init__(self) -> None:
        self.down = False
        self.missing_images: set[str] = set()
        self.failed_calls: collections.Counter[str] = collections.Counter()
        # Stage → Docker's refusal, raised by start(): a GPU driver the engine lacks, say.
        self.start_errors: dict[str, str] = {}
        # Seconds a stage's containers wait before they start their work, to catch a
        # job in that stage ({"filter": 30}); a stop ends the wait like the work.
        self.slow_stages: dict[str, float] = {}
        self.containers: dict[str, FakeContainer] = {}
        self.created: list[str] = []  # every container name ever created, in order
        # As the local engine's, where a test sets it: a fetch with nothing to download
        # then runs as a process of this host (runtime/hostproc.py), never a "container".
        self.shares_host_files = False
        self._scratch = Path(tempfile.mkdtemp(prefix="lc-fake-runtime-"))

    def __repr__(self) -> str:
        return f"<FakeRuntime containers={len(self.containers)} down={self.down}>"

    def _answering(self) -> None:
        if self.down:
            self.failed_calls["DockerUnavailableError"] += 1
            raise DockerUnavailableError("the fake Docker engine is down")

    # -- lifecycle and images ------------------------------------------------

    async def open(self) -> None:
        self._answering()

    async def close(self) -> None:
        """Unlike Docker's, these containers die with the runtime: nothing is left running."""
        for name in list(self.containers):
            await self._kill(self.containers[name], grace=0)
        await asyncio.to_thread(remove_tree, self._scratch)

    @property
    def errors(self) -> dict[str, int]:
        return dict(self.failed_calls)

    async def ping(self) -> bool:
        return not self.down

    async def resources(self, data_dir: Path) -> list[NodeResources]:
        # Its processes run on this host, and its jobs' folders are real.
        return [await asyncio.to_thread(host_resources, data_dir)]

    async def disk_quota(self, data_dir: Path, wanted: str) -> tuple[DiskQuota, str]:
        return await asyncio.to_thread(disk.choose, data_dir, wanted)

    async def leftover_storage(self, jobs_dir: Path) -> list[Path]:
        return await asyncio.to_thread(disk.mounted_folders, jobs_dir)

    async def image_exists(self, ref: str) -> bool:
        self._answering()
        return ref not in self.missing_images

    async def image_labels(self, ref: str) -> dict[str, str] | None:
        self._answering()
        if ref in self.missing_images:
            return None
        return {LABEL_DIGEST: helper_digest()}

    async def ensure_image(self, ref: str, pull_policy: str) -> None:
        self._answering()
        if ref in self.missing_images:
            raise ImageNotFoundError(f"image {ref} is not on this host (fake)")

    async def pullable(self, ref: str) -> str | None:
        self._answering()
        return f"no registry has {ref} (fake)" if ref in self.missing_images else None

    async def build_image(
        self, context: Path, tag: str, *, buildargs: dict[str, str], labels: dict[str, str]
    ) -> None:
        self._answering()
        self.missing_images.discard(tag)

    async def import_image(self, tarball: Path, tag: str, *, changes: list[str]) -> None:
        self._answering()
        self.missing_images.discard(tag)

    # -- containers ------------------------------------------------------------

    async def create(self, spec: ContainerSpec) -> None:
        self._answering()
        await self.ensure_image(spec.image, "never")
        # As Docker's runtime does: one left over under the same name is replaced.
        await self.remove(spec.name)
        self.containers[spec.name] = FakeContainer(spec)
        self.created.append(spec.name)

    async def ran_image(self, name: str) -> RanImage | None:
        """A stand-in image id: the sha256 of the reference the container was made with."""
        self._answering()
        container = self.containers.get(name)
        if container is None:
            return None
        digest = hashlib.sha256(container.spec.image.encode()).hexdigest()
        return RanImage(id=f"sha256:{digest}")

    def _get(self, name: str) -> FakeContainer:
        self._answering()
        container = self.containers.get(name)
        if container is None:
            raise ContainerError(f"no container {name}", status=404)
        return container

    async def start(self, name: str) -> None:
        container = self._get(name)
        if container.state is not ContainerState.CREATED:
            return
        refusal = self.start_errors.get(container.spec.labels.get(LABEL_STAGE, ""))
        if refusal is not None:
            raise ContainerError(refusal, status=500)
        argv, env = await asyncio.to_thread(self._host_command, container.spec)
        delay = self.slow_stages.get(container.spec.labels.get(LABEL_STAGE, ""))
        if delay:
            argv = ["sh", "-c", f'sleep {delay:g}; exec "$0" "$@"', *argv]
        container.process = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # so a stop reaches the whole process group
        )
        container.state, container.started_at = ContainerState.RUNNING, time.time()
        container.reader = asyncio.create_task(self._run(container))

    async def _run(self, container: FakeContainer) -> None:
        process = container.process
        assert process is not None and process.stdout is not None
        while chunk := await process.stdout.read(64 * 1024):
            container.output += chunk
            self._changed(container)
        code = await process.wait()
        # Docker reports a signal as 128 + its number.
        container.exit_code = 128 - code if code < 0 else code
        container.state, container.finished_at = ContainerState.EXITED, time.time()
        container.done.set()
        self._changed(container)

    @staticmethod
    def _changed(container: FakeContainer) -> None:
        container.changed.set()
        container.changed = asyncio.Event()

    async def follow_logs(self, name: str) -> AsyncIterator[bytes]:
        container = self._get(name)
        offset = 0
        while True:
            changed = container.changed  # taken before reading: no wake-up is lost
            if offset < len(container.output):
                data = bytes(container.output[offset:])
                offset += len(data)
                yield data
            elif container.done.is_set():
                return
            else:
                await changed.wait()

    async def wait(self, name: str) -> ContainerExit:
        container = self._get(name)
        await container.done.wait()
        assert container.exit_code is not None
        return ContainerExit(
            exit_code=container.exit_code,
            oom_killed=False,
            started_at=container.started_at,
            finished_at=container.finished_at,
        )

    async def state(self, name: str) -> ContainerState:
        self._answering()
        container = self.containers.get(name)
        return ContainerState.MISSING if container is None else container.state

    async def stop(self, name: str, grace: float) -> None:
        container = self.containers.get(name)
        self._answering()
        if container is not None:
            await self._kill(container, grace)

    async def _kill(self, container: FakeContainer, grace: float) -> None:
        process = container.process
        if process is None or container.done.is_set():
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(container.done.wait(), wait)
                return

    async def remove(self, name: str) -> None:
        self._answering()
        container = self.containers.pop(name, None)
        if container is not None:
            await self._kill(container, grace=0)

    async def list_labelled(self, instance: str) -> list[ContainerInfo]:
        self._answering()
        return [
            ContainerInfo(
                name=name,
                job_id=c.spec.labels.get(LABEL_JOB, ""),
                stage=c.spec.labels.get(LABEL_STAGE, ""),
                state=c.state,
            )
            for name, c in self.containers.items()
            if c.spec.labels.get(LABEL_INSTANCE) == instance
        ]

    async def logs_to_file(self, name: str, path: Path, *, limit: int, append: bool) -> int:
        data = bytes(self._get(name).output)
        return await asyncio.to_thread(write_capped, [data], path, limit=limit, append=append)

    # -- container paths on the host -------------------------------------------------

    def _host_command(self, spec: ContainerSpec) -> tuple[list[str], dict[str, str]]:
        """argv and variables of `spec`, with its container paths made host paths."""
        sources = {m.target: str(m.source) for m in spec.mounts}
        sources[HELPER_IN_IMAGE] = str(HELPER_ON_HOST)
        # One pass, longest target first, whole path components only: a host path
        # put in never gets mapped a second time.
        alternatives = "|".join(re.escape(t) for t in sorted(sources, key=len, reverse=True))
        pattern = re.compile(rf"(?<![\w.-])({alternatives})(?=/|$|[^\w.-])")

        def host(text: str) -> str:
            return pattern.sub(lambda m: sources[m.group(1)], text)

        argv = [host(a) for a in [*(spec.entrypoint or []), *spec.command]]
        if argv[:1] == ["python3"]:
            argv[0] = sys.executable
            if argv[1:2] and Path(argv[1]).parent == HELPER_ON_HOST:
                # The helpers use the standard library only: without site-packages (and
                # their .pth files) each starts in a third of the time, and a fast test
                # layer runs dozens of them.
                argv.insert(1, "-S")
        # The fetch document names local sources by their container paths too.
        document = next((a for a in argv if a.endswith("fetch.json")), None)
        if document is not None:
            mapped = self._scratch / f"{spec.name}.json"
            mapped.write_text(host(Path(document).read_text()))
            argv[argv.index(document)] = str(mapped)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        env.update({k: host(v) for k, v in spec.environment.items()})
        return argv, env
