"""What runs job containers, as the engine sees it: one small interface and its values.

The engine and the pipeline speak only to a `ContainerRuntime`. The local Docker
engine is one (local/docker.py); a fake for tests is another (testing.py); a
Swarm or Kubernetes executor would be one more module behind the same interface,
with nothing above it changed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

# The labels of every job container and volume, re-exported: the helper's reap reads them.
from localcompute.core.provenance import RanImage
from localcompute.helper.contract import LABEL_INSTANCE as LABEL_INSTANCE
from localcompute.helper.contract import LABEL_JOB as LABEL_JOB
from localcompute.helper.contract import LABEL_STAGE as LABEL_STAGE
from localcompute.runtime.quota import DiskQuota


class Area(StrEnum):
    """A part of a job's storage, by what it holds. Every mount names the one it is, so
    a runtime without the server's file system (Swarm) makes each its own way: the local
    engine binds the host folder, Swarm mounts the job's volume of that name on the node
    (or, for the spec and the local dataset files, has the fetch download them)."""

    SPEC = "spec"  # fetch.json: what the fetch downloads
    SOURCE = "source"  # one of the dataset owner's local files, by its number
    DATA = "data"  # the whole of the five below, for the fetch
    INPUTS = "inputs"
    TRANSFORMATIONS = "transformations"
    DDOS = "ddos"
    OUTPUTS = "outputs"
    LOGS = "logs"
    RESULTS = "results"  # the filtered outputs
    META = "meta"  # the filter's manifest
    # The job's folder as the filter needs it, outputs, results and meta in one mount, so
    # that an output can move by a rename (Swarm: those three areas' volumes beneath it).
    JOB = "job"


# The job's data areas, each a folder of DATA (and a volume of its own under Swarm).
DATA_AREAS = (Area.INPUTS, Area.TRANSFORMATIONS, Area.DDOS, Area.OUTPUTS, Area.LOGS)


@dataclass(frozen=True)
class Mount:
    source: Path  # on the server's host: what the local engine binds
    target: str
    read_only: bool = True
    area: Area | None = None  # which part of the job it is; None: not the job's storage


class Network(StrEnum):
    """What a container may reach, as the job needs it; each runtime makes it its own way
    (the local engine: Docker's none, bridge or host network)."""

    NONE = "none"  # loopback only: the algorithm, unless its environment lets it out
    EGRESS = "egress"  # out to the world, kept off the host's own services
    FETCH = "fetch"  # the fetch's downloads: what [docker] fetch_network says
    # The filter, back to this server only where results travel by HTTP (Swarm); where
    # they are on the server's own disk (the local engine), no network at all.
    SERVER = "server"


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to create one job container; `create_kwargs` maps it to Docker."""

    name: str
    image: str
    command: list[str]
    labels: Mapping[str, str]
    mounts: tuple[Mount, ...] = ()
    # Paths beneath a mount the container must not see: each covered by an empty,
    # read-only file system in memory. A runtime that mounts only the job's areas (Swarm)
    # has nothing there to cover.
    hidden: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    network: Network = Network.NONE
    user: str | None = None
    entrypoint: list[str] | None = None
    working_dir: str | None = None
    nano_cpus: int | None = None
    cpuset_cpus: str | None = None  # pinned cores, "0-1,4"
    memory_bytes: int | None = None
    pids_limit: int | None = None
    gpu_count: int = 0
    gpu_device_ids: tuple[str, ...] = ()
    gpu_driver: str = "nvidia"  # or "cdi": device ids are CDI names (nvidia.com/gpu=0)
    log_max_bytes: int = 10 * 1024 * 1024
    node: str = ""  # the node it runs on, as the pool placed the job; "": the runtime's choice
    oci_runtime: str = ""  # the OCI runtime it runs under (runsc); "": the engine's default
    # The hardened profile (runtime/hardening.py): the project's seccomp profile and a
    # read-only root with /tmp in memory; False: Docker's default profile, a writable root.
    hardened: bool = True


class ContainerState(StrEnum):
    """Where a job's container is, in words every runtime can say: what resuming a job
    after a restart decides on (a created one is started, a running one re-attached, an
    exited one read)."""

    MISSING = "missing"  # never made, or removed
    CREATED = "created"  # made, never started
    RUNNING = "running"  # started, not ended (paused or restarting count as running)
    EXITED = "exited"  # ended: wait() reads how


@dataclass(frozen=True)
class ContainerExit:
    exit_code: int
    # None where the runtime cannot tell (a Swarm task says only "exit 137").
    oom_killed: bool | None
    started_at: float | None
    finished_at: float | None
    # The runtime's own words on the end, where it has any ("task: non-zero exit").
    reason: str = ""
    # The runtime lost the container (its node went down): the exit code means nothing,
    # `reason` says what happened.
    lost: bool = False


@dataclass(frozen=True)
class NodeResources:
    """What one node that runs jobs offers, as measured there: the pool is planned on
    it, capped by [pool]."""

    node: str  # the runtime's name for it; "" for the local engine, the server's host
    cores: tuple[int, ...]  # usable cores, by number
    ram_bytes: int
    disk_bytes: int  # free where the jobs' data lives
    gpus: tuple[str, ...]  # GPU devices, by the node's names (0, 1, …)
    cpu_model: str
    labels: Mapping[str, str] = field(default_factory=dict)  # the node's, where it has any


@dataclass(frozen=True)
class ContainerInfo:
    name: str
    job_id: str
    stage: str
    state: ContainerState


class ContainerRuntime(Protocol):
    """Containers and images, awaited without blocking the event loop.

    Names are deterministic, so every call can be repeated after a restart;
    stop and remove treat a container that is gone as done. Errors are
    localcompute's: DockerUnavailableError when the runtime does not answer,
    ImageNotFoundError, ContainerError.
    """

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> bool: ...
    async def resources(self, data_dir: Path) -> list[NodeResources]:
        """Each node jobs may run on; `data_dir`: where a job's data lives on the server.
        Asked before open(), as is disk_quota: a pool that cannot be had is a configuration
        error, said before the engine is even asked for."""

    async def disk_quota(self, data_dir: Path, wanted: str) -> tuple[DiskQuota, str]:
        """How a job's disk is limited (`wanted`: [pool] disk_quota, or auto: the strongest
        that works), and why stronger ones were passed over. ConfigError when the one
        wanted cannot work here."""

    async def leftover_storage(self, jobs_dir: Path) -> list[Path]:
        """The data folders (jobs_dir/<job>/data) whose storage outlives a crash (a
        mount, an image, a node's volumes): released by the sweep when their job is not
        active, with the disk quota's detach."""

    @property
    def errors(self) -> dict[str, int]:
        """Failed calls since it opened, by kind of failure (for the metrics)."""

    @property
    def shares_host_files(self) -> bool:
        """Whether a job's folder on the server is the one its containers see (the local
        engine): then a step that needs only that folder and this host's files may run
        as a process here (runtime/hostproc.py)."""

    async def image_exists(self, ref: str) -> bool: ...
    async def image_labels(self, ref: str) -> dict[str, str] | None: ...
    async def ensure_image(self, ref: str, pull_policy: str) -> None:
        """Make `ref` present as the policy says, or raise ImageNotFoundError."""

    async def pullable(self, ref: str) -> str | None:
        """None when `ref`'s registry has it (asked, nothing pulled); else why not."""

    async def build_image(
        self, context: Path, tag: str, *, buildargs: dict[str, str], labels: dict[str, str]
    ) -> None: ...
    async def import_image(self, tarball: Path, tag: str, *, changes: list[str]) -> None:
        """An image from a root file system's tar (`docker import`), with Dockerfile
        `changes` (CMD, ENV…): how the images localcompute makes get there without a
        registry."""

    async def create(self, spec: ContainerSpec) -> None: ...
    async def start(self, name: str) -> None: ...
    async def wait(self, name: str) -> ContainerExit: ...
    async def state(self, name: str) -> ContainerState:
        """MISSING when there is no such container."""

    async def stop(self, name: str, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""

    async def remove(self, name: str) -> None: ...
    async def list_labelled(self, instance: str) -> list[ContainerInfo]: ...
    def follow_logs(self, name: str) -> AsyncIterator[bytes]:
        """The container's stdout and stderr from its start, as they come, interleaved and
        without any framing; the iteration ends when the container exits."""
        ...

    async def logs_to_file(self, name: str, path: Path, *, limit: int, append: bool) -> int:
        """Copy the container's output to `path` (at most `limit` bytes); returns the size."""

    async def ran_image(self, name: str) -> RanImage | None:
        """The image the container ran, by content (for the job's receipt); None when
        the container is gone or the runtime cannot tell."""
