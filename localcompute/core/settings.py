"""Typed settings, loaded once from TOML.

Every key has a type, a default and a one-line description; config.example.toml
holds the same defaults. A wrong key or type stops start-up with a message that
names the file and the key path.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from localcompute.core.errors import UnknownEnvironmentError
from localcompute.core.jobspec import Container
from localcompute.core.limit_settings import ConnectionSettings, JobLimits, LimitSettings

CONFIG_ENV_VAR = "LOCALCOMPUTE_CONFIG"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def default_data_dir() -> Path:
    """Without a configuration file: the user's data folder, wherever the server starts
    ($XDG_DATA_HOME/localcompute, else ~/.local/share/localcompute)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "localcompute"


class ServerSettings(_Section):
    host: str = Field("127.0.0.1", description="Address the HTTP server listens on.")
    port: int = Field(8030, ge=0, le=65535, description="TCP port of the HTTP server.")
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="The SQLite file, job folders and results; relative to the config file.",
    )
    public_url: str = Field(
        "", description="Base of URLs in answers; empty means http://<host>:<port>."
    )
    max_body_bytes: int = Field(
        1024 * 1024, gt=0, description="Request bodies larger than this are refused with 413."
    )
    metrics_allow: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="Networks that may read /metrics and open the dashboard (/ui/), which "
        'shows every consumer\'s jobs: the operator\'s own; ["0.0.0.0/0", "::/0"] for all.',
    )
    reconcile_interval: float = Field(
        60,
        gt=0,
        description="Seconds between sweeps that remove containers and mounts of this "
        "server that belong to no running job (a crash's leftovers).",
    )

    @field_validator("metrics_allow")
    @classmethod
    def _networks(cls, networks: list[str]) -> list[str]:
        for network in networks:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad one
        return networks

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


class RuntimeSettings(_Section):
    kind: Literal["docker", "swarm"] = Field(
        "docker",
        description="What runs the jobs' containers: docker, the Docker engine that "
        "DOCKER_HOST names (this host's by default); swarm, the nodes of a Docker Swarm.",
    )
    manager: str = Field(
        "", description="swarm: a manager's Docker API (unix:///… or tcp://host:2376)."
    )
    server_url: str = Field(
        "",
        description="swarm: this server as the nodes reach it (http://10.0.0.5:8030): "
        "the fetch downloads from it, the filter uploads the results to it.",
    )
    node_labels: list[str] = Field(
        default_factory=list,
        description='swarm: the node labels a node must have to run jobs ("key=value" or '
        '"key"); none: every node that is ready and active.',
    )
    egress_network: str = Field(
        "",
        description="swarm: the network of the fetch, the filter and an algorithm let "
        'out; "": the node\'s default, "host": the node\'s own.',
    )
    node_socket: str = Field(
        "/var/run/docker.sock",
        description="swarm: the Docker socket on each node, as a path there: the short "
        "task that removes an ended job's volumes on its node mounts it.",
    )

    @model_validator(mode="after")
    def _swarm_needs_addresses(self) -> RuntimeSettings:
        if self.kind == "swarm":
            for key in ("manager", "server_url"):
                if not getattr(self, key):
                    raise ValueError(f"kind = swarm needs [runtime] {key}")
        return self


class DockerSettings(_Section):
    helper_image: str = Field(
        "localcompute/helper:latest", description="Image that runs the fetch and filter steps."
    )
    pull_policy: Literal["if-not-present", "always", "never"] = Field(
        "if-not-present", description="When to pull an image from its registry."
    )
    fetch_network: Literal["auto", "bridge", "host"] = Field(
        "auto",
        description="Network of the fetch container; auto: bridge when the engine has one.",
    )
    fetch_timeout: float = Field(
        3600, gt=0, description="Seconds the fetch container may run in all."
    )
    filter_timeout: float = Field(
        600, gt=0, description="Seconds the filter container may run in all."
    )
    stop_grace: float = Field(
        3, ge=0, description="Seconds between SIGTERM and SIGKILL when a job is stopped."
    )
    host_fetch: bool = Field(
        True,
        description="A fetch with nothing to download (raw code, local files) runs as a "
        "process of this host, as the job's user, not in a helper container (local engine).",
    )
    host_filter: bool = Field(
        False,
        description="The output filter runs as a process of this host, as the job's user, "
        "once the algorithm's container is gone, not in a helper container (local engine): "
        "a container lifecycle less a job, but a server that dies mid-filter withholds the "
        "outputs, where the container carries on and is awaited.",
    )
    run_as_user: str = Field(
        "auto",
        description="uid:gid of job containers; auto: the server's own, or 1000:1000 as root.",
    )
    pids_limit: int = Field(512, gt=0, description="Most processes one job container may run.")
    log_max_bytes: int = Field(
        10 * 1024 * 1024, gt=0, description="Most bytes kept of one container's log."
    )


class DownloadSettings(_Section):
    """How the fetch downloads a job's inputs and algorithm."""

    connect_timeout: float = Field(30, gt=0, description="Seconds a download may wait to connect.")
    idle_timeout: float = Field(
        120, gt=0, description="Seconds a download may go without receiving a byte."
    )


class EnvironmentSettings(_Section):
    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = Field("", description="Free text shown to clients.")
    cpu: float = Field(1.0, gt=0, description="CPUs per job (may be fractional).")
    cpu_type: str = Field("", description="CPU model shown to clients; read from the host.")
    ram_gb: float = Field(1.0, gt=0, description="Memory per job in GiB; no swap.")
    disk_gb: float = Field(
        1.0, gt=0, description="Disk per job in GiB: everything the job writes, enforced."
    )
    gpus: int = Field(
        0, ge=0, description="GPUs per job; 0 with gpu_devices: as many as gpu_devices names."
    )
    gpu_devices: list[str] = Field(
        default_factory=list,
        description="GPU devices this environment's jobs are given from, one job at a time "
        "each; empty: the [pool] gpus.",
    )
    gpu_type: str = Field("", description="GPU model shown to clients.")
    gpu_driver: Literal["nvidia", "cdi"] = Field(
        "nvidia",
        description="How containers get GPUs: the NVIDIA runtime (the Container Toolkit), or "
        "CDI device names such as nvidia.com/gpu=0 in gpu_devices (Docker >= 25, CDI on).",
    )
    max_jobs: int = Field(1, ge=1, description="Jobs of this environment that run at once.")
    max_job_duration: float = Field(
        3600, gt=0, description="Seconds an algorithm may run, from its container's start."
    )
    price_min: float = Field(0, ge=0, description="Price per minute; 0 is free.")
    storage_expiry: int = Field(
        604800, ge=0, description="Seconds results are kept after a job ends."
    )
    algorithm_network: bool = Field(
        False, description="Whether the algorithm container gets a network."
    )
    node_label: str = Field(
        "",
        pattern=r"^$|^[A-Za-z0-9][A-Za-z0-9._/-]*(=.*)?$",
        description='swarm: the node label ("key=value" or "key") a node must have to run '
        "this environment's jobs; empty: any eligible node.",
    )
    runtime: str = Field(
        "",
        pattern=r"^$|^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="OCI runtime the algorithm runs under, as registered with Docker "
        '("runsc": gVisor); empty: the engine\'s default (runc).',
    )
    hardening: Literal["strict", "docker"] = Field(
        "strict",
        description='"strict": the project\'s seccomp profile and a read-only root with /tmp '
        'in memory; "docker": Docker\'s default seccomp profile and a writable root.',
    )
    queue_max_wait: float = Field(
        0,
        ge=0,
        description="Seconds a job may wait for a slot before it ends unrun (a job's own "
        "queueMaxWaitTime may ask less); 0: it waits as long as it takes.",
    )
    limits: JobLimits = Field(
        default_factory=JobLimits,
        description="[limits] job limits of this environment's own; a key left out keeps [limits].",
    )

    @model_validator(mode="after")
    def _sandbox_has_no_network(self) -> EnvironmentSettings:
        if self.runtime == "runsc" and self.algorithm_network:
            raise ValueError(
                f"environment {self.id!r}: runsc is registered with --network=none (it refuses "
                "a network in the root network namespace), so algorithm_network must be false"
            )
        return self

    @property
    def gpu_count(self) -> int:
        """GPUs one job gets."""
        return self.gpus or len(self.gpu_devices)

    @property
    def pins_cores(self) -> bool:
        """Whole CPUs are pinned cores; a fraction is a share of the cores (NanoCpus)."""
        return float(self.cpu).is_integer()


class PoolSettings(_Section):
    """The host's capacity, shared by every environment; each cap leaves the rest to the host."""

    cpus: str = Field(
        "",
        pattern=r"^$|^\d+(-\d+)?(,\d+(-\d+)?)*$",
        description="Cores jobs may use, as a cpuset list (0-3,6); empty: all the server may.",
    )
    ram_gb: float = Field(
        0, ge=0, description="Memory jobs may hold in GiB; 0: the host's (or the cgroup's)."
    )
    disk_gb: float = Field(
        0, ge=0, description="Disk jobs may hold in GiB; 0: what is free under data_dir at start."
    )
    gpus: list[str] = Field(
        default_factory=list,
        description="GPU devices of the pool; empty: those the environments name, else the "
        "host's /dev/nvidiaN (as 0, 1, …).",
    )
    disk_quota: Literal["auto", "xfs", "loop", "watch"] = Field(
        "auto",
        description="How a job's disk is limited; auto: XFS project quota if data_dir has it, "
        "else a loop-mounted image (root), else a watcher (soft).",
    )


class ProviderSettings(_Section):
    private_key: str = Field(
        "", description="Hex key of the provider; empty: private_key_file, else one made once."
    )
    private_key_file: str = Field("", description="File holding the hex key.")
    chain_ids: list[int] = Field(
        default_factory=lambda: [8996], min_length=1, description="Chains the provider serves."
    )
    dataset_roots: list[Path] = Field(
        default_factory=list, description="Local dataset files must lie under one of these."
    )


class OperatorSettings(_Section):
    allowed_providers: list[str] = Field(
        default_factory=list,
        description="Provider addresses that may call /api/v1; empty: loopback callers only.",
    )


class NodeSettings(_Section):
    """The Ocean Node dialect (ocean.js 8.x): free compute, no chain."""

    prefix: str = Field(
        "/node",
        pattern=r"^/[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*$",
        description="Where the dialect is mounted: point ocean.js 8 at http://host:port<prefix>.",
    )
    token_lifetime: int = Field(
        86400,
        ge=0,
        description="Seconds an auth token lives if the client asks no end; 0: until invalidated.",
    )
    unsigned_results: Literal["token-jobs", "never"] = Field(
        "token-jobs",
        description=(
            "ocean.js 8 downloads results of a token session with no credentials at all. "
            "token-jobs: allow it for a job started with a token that is still valid, "
            "to its owner; never: refuse every unsigned download."
        ),
    )


class ContainerSettings(Container):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSettings(_Section):
    did: str = Field(min_length=1)
    files: list[str] = Field(min_length=1, description="http(s) URLs or local file paths.")
    allow_raw_algorithm: bool = True
    trusted_algorithms: list[str] = Field(
        default_factory=list, description="Algorithm DIDs allowed; empty means any."
    )
    ddo: Path | None = Field(None, description="JSON file written to /data/ddos/<did>.")


class AlgorithmSettings(_Section):
    did: str = Field(min_length=1)
    rawcode: str | None = None
    url: str | None = None
    file: Path | None = None
    container: ContainerSettings

    @model_validator(mode="after")
    def _one_source(self) -> AlgorithmSettings:
        if sum(x is not None for x in (self.rawcode, self.url, self.file)) != 1:
            raise ValueError("an algorithm needs exactly one of rawcode, url or file")
        if self.rawcode is not None and not self.rawcode.strip():
            raise ValueError("rawcode is blank")
        return self


def _default_environments() -> list[EnvironmentSettings]:
    return [
        EnvironmentSettings(
            id="ocean-compute",
            description="Default environment",
            cpu=1,
            ram_gb=1,
            disk_gb=1,
            max_jobs=2,
            max_job_duration=3600,
        )
    ]


class Settings(_Section):
    server: ServerSettings = Field(default_factory=ServerSettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    docker: DockerSettings = Field(default_factory=DockerSettings)
    downloads: DownloadSettings = Field(default_factory=DownloadSettings)
    environments: Annotated[list[EnvironmentSettings], Field(min_length=1)] = Field(
        default_factory=_default_environments
    )
    provider: ProviderSettings = Field(default_factory=ProviderSettings)
    operator: OperatorSettings = Field(default_factory=OperatorSettings)
    pool: PoolSettings = Field(default_factory=PoolSettings)
    node: NodeSettings = Field(default_factory=NodeSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    connections: ConnectionSettings = Field(default_factory=ConnectionSettings)
    datasets: list[DatasetSettings] = Field(default_factory=list)
    algorithms: list[AlgorithmSettings] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_environment_ids(self) -> Settings:
        seen: set[str] = set()
        for env in self.environments:
            if env.id in seen:
                raise ValueError(f"environment id {env.id!r} is declared twice")
            seen.add(env.id)
        return self

    @model_validator(mode="after")
    def _cdi_names_devices(self) -> Settings:
        for env in self.environments:
            if env.gpu_driver == "cdi" and env.gpus and not (env.gpu_devices or self.pool.gpus):
                raise ValueError(
                    f"environment {env.id!r}: gpu_driver 'cdi' gives devices by name "
                    "(e.g. nvidia.com/gpu=0) in gpu_devices or [pool] gpus, not by count: "
                    "Docker refuses a count with the CDI driver"
                )
        return self

    @model_validator(mode="after")
    def _local_files_inside_roots(self) -> Settings:
        roots = [r.resolve() for r in self.provider.dataset_roots]
        for i, dataset in enumerate(self.datasets):
            for file in dataset.files:
                if file.startswith(("http://", "https://")):
                    continue
                path = Path(file).resolve()
                if not any(path.is_relative_to(root) for root in roots):
                    raise ValueError(
                        f"datasets[{i}] file {file} is not under any [provider] dataset_roots"
                    )
        return self

    def environment(self, env_id: str) -> EnvironmentSettings | None:
        return next((e for e in self.environments if e.id == env_id), None)

    def require_environment(self, env_id: str | None) -> EnvironmentSettings:
        """The environment `env_id`; the one refusal every API gives when there is none."""
        env = self.environment(env_id) if env_id else None
        if env is None:
            raise UnknownEnvironmentError(
                f"Compute environment {env_id!r} does not exist", environment=env_id
            )
        return env

    @property
    def data_dir(self) -> Path:
        return self.server.data_dir.resolve()

    @property
    def total_slots(self) -> int:
        return sum(e.max_jobs for e in self.environments)
