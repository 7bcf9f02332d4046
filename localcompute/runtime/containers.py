"""The three containers of a job, as pure functions from the job to a ContainerSpec.

Names are deterministic (lc-<instance>-<job>-<stage>) so a step can be repeated
after a restart, and labels say whose container it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from localcompute.core.jobspec import FileSource, did_folder
from localcompute.core.models import Allocation, Job, held_by
from localcompute.core.settings import DockerSettings, DownloadSettings, EnvironmentSettings
from localcompute.helper.contract import HELPER_IN_IMAGE
from localcompute.runtime import (
    LABEL_INSTANCE,
    LABEL_JOB,
    LABEL_STAGE,
    Area,
    ContainerSpec,
    Mount,
    Network,
    hardening,
)
from localcompute.runtime.workspace import Workspace

ALGORITHM_PATH = "/data/transformations/algorithm"
SOURCES_DIR = "/sources"
# Where the filter sees the job's folder (Workspace's layout beneath it).
FILTER_JOB = "/job"


class Stage(StrEnum):
    FETCH = "fetch"
    ALGORITHM = "algorithm"
    FILTER = "filter"


@dataclass(frozen=True)
class JobContext:
    """What every container of one job shares."""

    job: Job
    workspace: Workspace
    instance: str
    docker_settings: DockerSettings
    user: str
    download_settings: DownloadSettings = field(default_factory=DownloadSettings)
    # The filter copies the outputs out, never renames them (DiskQuota.keeps_renamed).
    copy_outputs: bool = False

    def name(self, stage: Stage) -> str:
        return container_name(self.instance, self.job.job_id, stage)

    @property
    def node(self) -> str:
        """Where the pool placed the job: all its stages run on that node."""
        return self.job.allocation.node if self.job.allocation is not None else ""

    @property
    def cpuset(self) -> str | None:
        """The job's cores: its helper containers run on them too, off other jobs' cores."""
        allocation = self.job.allocation
        return allocation.cpuset_text if allocation is not None and allocation.cpuset else None

    def allocation(self, env: EnvironmentSettings) -> Allocation:
        """What the pool gave the job (models.held_by)."""
        return held_by(self.job.allocation, env, self.job.spec.resources)

    def labels(self, stage: Stage) -> dict[str, str]:
        return {
            LABEL_JOB: self.job.job_id,
            LABEL_STAGE: str(stage),
            LABEL_INSTANCE: self.instance,
        }


def container_name(instance: str, job_id: str, stage: Stage) -> str:
    return f"lc-{instance}-{job_id}-{stage}"


def fetch_document(ctx: JobContext, *, sources: list[str] | None = None) -> str:
    """The fetch's instructions. In its container local files appear under
    /sources/<n>; a fetch run on the host (engine/helpers_here.py) names them by `sources`."""
    spec = ctx.job.spec
    algo = spec.algorithm
    # Numbered in the order of JobSpec.local_paths, which fetch_container mounts.
    if sources is None:
        sources = [f"{SOURCES_DIR}/{i}" for i in range(len(spec.local_paths))]
    sources_left = iter(sources)

    def entry(source: FileSource) -> dict[str, str]:
        return {"url": source.url} if source.url is not None else {"path": next(sources_left)}

    inputs = [
        {
            "did": item.did,
            "folder": did_folder(item.did),
            "files": [entry(f) for f in item.files],
            "ddo": item.ddo,
        }
        for item in spec.inputs
    ]
    algorithm = {
        "did": algo.did,
        "folder": did_folder(algo.did),
        # Only the source that runs: blank raw code must not shadow a url or a file.
        "rawcode": algo.rawcode if algo.uses_rawcode else None,
        "url": algo.url,
        "path": next(sources_left) if algo.path is not None and not algo.uses_rawcode else None,
        "ddo": algo.ddo,
    }
    return json.dumps(
        {
            "inputs": inputs,
            "algorithm": algorithm,
            "algocustomdata": algo.algocustomdata,
            "has_algocustomdata": algo.algocustomdata is not None,
            "connect_timeout": ctx.download_settings.connect_timeout,
            "idle_timeout": ctx.download_settings.idle_timeout,
        }
    )


def fetch_container(ctx: JobContext) -> ContainerSpec:
    ws = ctx.workspace
    sources = tuple(
        Mount(Path(p).resolve(), f"{SOURCES_DIR}/{i}", area=Area.SOURCE)
        for i, p in enumerate(ctx.job.spec.local_paths)
    )
    return ContainerSpec(
        name=ctx.name(Stage.FETCH),
        image=ctx.docker_settings.helper_image,
        entrypoint=["python3", f"{HELPER_IN_IMAGE}/fetch.py"],
        command=["/job/fetch.json", "--data", "/data"],
        labels=ctx.labels(Stage.FETCH),
        mounts=(
            Mount(ws.spec, "/job", read_only=True, area=Area.SPEC),
            Mount(ws.data, "/data", read_only=False, area=Area.DATA),
            *sources,
        ),
        network=Network.FETCH,
        user=ctx.user,
        cpuset_cpus=ctx.cpuset,
        pids_limit=ctx.docker_settings.pids_limit,
        log_max_bytes=ctx.docker_settings.log_max_bytes,
        node=ctx.node,
    )


def algorithm_container(ctx: JobContext, env: EnvironmentSettings) -> ContainerSpec:
    job, ws = ctx.job, ctx.workspace
    algo = job.spec.algorithm
    script = algo.entrypoint.replace("$ALGO", ALGORITHM_PATH)
    held = ctx.allocation(env)
    gpus = tuple(held.gpus)
    # A job admitted before the pool had no devices named: the runtime's count form.
    gpu_count = 0 if gpus else env.gpu_count if job.allocation is None else 0
    return ContainerSpec(
        name=ctx.name(Stage.ALGORITHM),
        image=algo.image_ref,
        entrypoint=["sh", "-c", script],
        command=[],
        labels=ctx.labels(Stage.ALGORITHM),
        mounts=(
            Mount(ws.inputs, "/data/inputs", read_only=True, area=Area.INPUTS),
            Mount(ws.ddos, "/data/ddos", read_only=True, area=Area.DDOS),
            Mount(ws.transformations, "/data/transformations", True, Area.TRANSFORMATIONS),
            Mount(ws.outputs, "/data/outputs", read_only=False, area=Area.OUTPUTS),
            Mount(ws.logs, "/data/logs", read_only=False, area=Area.LOGS),
        ),
        environment={
            # A read-only root: what expects a writable home gets /tmp (the client may
            # name another).
            **({"HOME": "/tmp"} if env.hardening == "strict" else {}),
            # The client's own variables first: Ocean's contract variables win a clash.
            **algo.envs,
            "DIDS": json.dumps([did_folder(d) for d in job.input_dids]),
            "TRANSFORMATION_DID": did_folder(algo.did),
            "VOLUME": "/data",
            "LOGS": "/data/logs",
            "INPUTS": "/data/inputs",
            "OUTPUTS": "/data/outputs",
            "secret": job.secret,
            # Which GPUs the job got, by the names the host gives them.
            **({"LOCALCOMPUTE_GPUS": ",".join(gpus)} if gpus else {}),
        },
        network=Network.EGRESS if env.algorithm_network else Network.NONE,
        user=ctx.user,
        nano_cpus=int(held.cpu * 1_000_000_000),
        cpuset_cpus=held.cpuset_text or None,
        memory_bytes=held.ram_bytes,
        pids_limit=hardening.pids_limit(ctx.docker_settings.pids_limit, env.runtime),
        gpu_count=gpu_count,
        gpu_device_ids=gpus,
        gpu_driver=env.gpu_driver,
        log_max_bytes=ctx.docker_settings.log_max_bytes,
        node=ctx.node,
        # Only the algorithm, the stranger's code, runs in the sandbox: fetch and filter
        # are the provider's own, and the fetch needs a network gVisor is not given.
        oci_runtime=env.runtime,
        hardened=env.hardening == "strict",
    )


def filter_container(ctx: JobContext) -> ContainerSpec:
    ws = ctx.workspace

    def seen(path: Path) -> str:
        """Where the filter sees a part of the job's folder."""
        return f"{FILTER_JOB}/{path.relative_to(ws.root)}"

    return ContainerSpec(
        name=ctx.name(Stage.FILTER),
        image=ctx.docker_settings.helper_image,
        entrypoint=["python3", f"{HELPER_IN_IMAGE}/filter.py"],
        command=[
            "--outputs",
            seen(ws.outputs),
            "--results",
            seen(ws.results),
            "--manifest",
            seen(ws.filter_manifest),
            "--logs",
            seen(ws.logs),
            *(["--archive"] if ctx.job.spec.output_archive else []),
            *(["--copy"] if ctx.copy_outputs else []),
        ],
        labels=ctx.labels(Stage.FILTER),
        mounts=(
            # The job's folder as one mount, writable: the filter moves the outputs out of
            # the quota, and where one file system holds both (a watched folder) a move is
            # a rename, not a copy; across two mounts it could only copy.
            Mount(ws.root, FILTER_JOB, read_only=False, area=Area.JOB),
            # Read only: where results travel by HTTP, the algorithm's own log goes too.
            Mount(ws.logs, seen(ws.logs), read_only=True, area=Area.LOGS),
        ),
        # The rest of the job's folder is none of the filter's business: the fetch's
        # instructions (URLs, headers), the server's logs, and the data sets themselves.
        hidden=tuple(
            seen(folder)
            for folder in (ws.spec, ws.adminlogs, ws.inputs, ws.transformations, ws.ddos)
        ),
        network=Network.SERVER,
        user=ctx.user,
        cpuset_cpus=ctx.cpuset,
        pids_limit=ctx.docker_settings.pids_limit,
        log_max_bytes=ctx.docker_settings.log_max_bytes,
        node=ctx.node,
    )


def probe_container(
    instance: str,
    env: EnvironmentSettings,
    devices: tuple[str, ...],
    docker_settings: DockerSettings,
    user: str,
    node: str = "",
) -> ContainerSpec:
    """A container that asks Docker for `env`'s GPUs and runtime as a job would, and does nothing:
    whether Docker can give them is known at start-up, in Docker's own words."""
    return ContainerSpec(
        name=f"lc-{instance}-probe-{env.id}",
        image=docker_settings.helper_image,
        entrypoint=["true"],
        command=[],
        labels={LABEL_INSTANCE: instance, LABEL_STAGE: "probe"},
        network=Network.NONE,
        user=user,
        pids_limit=hardening.pids_limit(docker_settings.pids_limit, env.runtime),
        gpu_count=0 if devices else env.gpu_count,
        gpu_device_ids=devices,
        gpu_driver=env.gpu_driver,
        node=node,
        oci_runtime=env.runtime,
        hardened=env.hardening == "strict",
    )
