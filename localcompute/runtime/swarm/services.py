"""A job container as a Swarm service, and a Swarm task as a container's state: pure
functions, no calls.

Each stage is a replicated-job service with restart condition none, so that it runs at
most once, placed by `node.id` (every engine of a lab on one machine reports one engine
id, and hostnames repeat). The job's data are named volumes on that node, one per area
(Docker 20.10 mounts no subpath of a volume), labelled with the job so that the reap task
finds them; the spec and the dataset owner's local files are not mounted at all: the
fetch downloads them from the server, and the filter uploads the results to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from localcompute.core.errors import ContainerError
from localcompute.runtime import hardening
from localcompute.runtime.base import (
    DATA_AREAS,
    LABEL_INSTANCE,
    LABEL_JOB,
    LABEL_STAGE,
    Area,
    ContainerExit,
    ContainerSpec,
    ContainerState,
    Mount,
    Network,
)
from localcompute.runtime.times import docker_time

# What a task is once it will not run again.
TERMINAL = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned", "remove"})
# Before these the task has not begun to run (the node may still be pulling its image).
NOT_STARTED = frozenset({"new", "pending", "assigned", "accepted", "preparing"})
# On the container a stop runs in a stage's place (see SwarmRuntime.stop).
STOPPER_LABEL = "localcompute.stopper"
# The stages that talk to the server where the node has none of its disk.
SERVER_STAGES = ("fetch", "filter")


@dataclass(frozen=True)
class Placement:
    """Where and how the services of this server run."""

    instance: str
    node_id: str
    server_url: str
    egress_network: str  # "": the node's default network
    helper_image: str


def volume_name(instance: str, job_id: str, area: Area) -> str:
    return f"lc-{instance}-{job_id}-{area}"


def job_network_name(instance: str, job_id: str) -> str:
    return f"lc-{instance}-{job_id}"


def service_mounts(spec: ContainerSpec, instance: str) -> list[dict[str, Any]]:
    """Each of the spec's mounts as the job's volumes on the node; the spec and the local
    files are downloaded by the fetch instead. A mount of anything else cannot be had on a
    node without the server's disk: refused, not silently dropped."""
    job_id = spec.labels.get(LABEL_JOB, "")
    mounts: list[dict[str, Any]] = []

    def volume(area: Area, target: str, read_only: bool) -> dict[str, Any]:
        return {
            "Type": "volume",
            "Source": volume_name(instance, job_id, area),
            "Target": target,
            "ReadOnly": read_only,
            "VolumeOptions": {"Labels": {LABEL_JOB: job_id, LABEL_INSTANCE: instance}},
        }

    for mount in spec.mounts:
        if mount.area in (Area.SPEC, Area.SOURCE):
            continue
        if mount.area is Area.DATA:
            mounts += [volume(a, f"{mount.target}/{a}", mount.read_only) for a in DATA_AREAS]
        elif mount.area is Area.JOB:
            mounts += [
                volume(Area.OUTPUTS, f"{mount.target}/data/{Area.OUTPUTS}", mount.read_only),
                volume(Area.RESULTS, f"{mount.target}/{Area.RESULTS}", mount.read_only),
                volume(Area.META, f"{mount.target}/{Area.META}", mount.read_only),
            ]
        elif mount.area is not None and job_id:
            mounts.append(volume(mount.area, mount.target, mount.read_only))
        else:
            raise ContainerError(_unmountable(spec, mount))
    return mounts


def _unmountable(spec: ContainerSpec, mount: Mount) -> str:
    return (
        f"{spec.name}: {mount.source} cannot be mounted on a Swarm node: only a job's own "
        "storage travels there"
    )


def service_body(
    spec: ContainerSpec, placement: Placement, *, network: str | None, token: str
) -> dict[str, Any]:
    """The body of POST /services/create for `spec`. `network`: the job's internal
    overlay, or the egress network, or None for the node's default; `token`: the stage's,
    for a fetch or a filter (core/stagekey.py)."""
    stage = spec.labels.get(LABEL_STAGE, "")
    job_id = spec.labels.get(LABEL_JOB, "")
    env = dict(spec.environment)
    # Swarm picks the node's devices itself and names them in DOCKER_RESOURCE_GPU; the
    # pool's names (the count is the same) would say other ones.
    env.pop("LOCALCOMPUTE_GPUS", None)
    if stage in SERVER_STAGES and job_id:
        env["LOCALCOMPUTE_STAGE_URL"] = f"{placement.server_url}/api/runtime/jobs/{job_id}/{stage}"
        env["LOCALCOMPUTE_STAGE_TOKEN"] = token
    container: dict[str, Any] = {
        "Image": spec.image,
        "Labels": dict(spec.labels),
        "Env": [f"{k}={v}" for k, v in env.items()],
        "Mounts": service_mounts(spec, placement.instance),
        # Unprivileged: no capability at all, as on the local engine.
        "CapabilityDrop": ["ALL"],
        # An init process forwards SIGTERM and reaps zombies.
        "Init": True,
    }
    if spec.hardened:
        # The hardened profile's root and /tmp (runtime/hardening.py). Its seccomp
        # profile and no-new-privileges a Docker 20.10 service cannot carry.
        container["ReadOnly"] = True
        container["Mounts"].append(
            {
                "Type": "tmpfs",
                "Target": "/tmp",
                "TmpfsOptions": {
                    "SizeBytes": hardening.tmpfs_bytes(spec.memory_bytes),
                    "Mode": 0o1777,
                },
            }
        )
    if spec.entrypoint is not None:
        container["Command"] = list(spec.entrypoint)
        container["Args"] = list(spec.command)
    elif spec.command:
        container["Args"] = list(spec.command)
    if spec.user:
        container["User"] = spec.user
    if spec.working_dir:
        container["Dir"] = spec.working_dir
    limits: dict[str, Any] = {}
    if spec.nano_cpus:
        limits["NanoCPUs"] = spec.nano_cpus
    if spec.memory_bytes:
        limits["MemoryBytes"] = spec.memory_bytes
    if spec.pids_limit:
        limits["Pids"] = spec.pids_limit
    resources: dict[str, Any] = {"Limits": limits}
    gpus = spec.gpu_count or len(spec.gpu_device_ids)
    if gpus:
        # Swarm's generic resources: the node's scheduler names the devices it gives in
        # DOCKER_RESOURCE_GPU.
        resources["Reservations"] = {
            "GenericResources": [{"DiscreteResourceSpec": {"Kind": "gpu", "Value": gpus}}]
        }
    template: dict[str, Any] = {
        "ContainerSpec": container,
        "Resources": resources,
        "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
        "Placement": {"Constraints": [f"node.id=={placement.node_id}"]},
        "LogDriver": {
            "Name": "json-file",
            "Options": {"max-size": str(max(spec.log_max_bytes, 1024)), "max-file": "2"},
        },
    }
    if network:
        template["Networks"] = [{"Target": network}]
    return {
        "Name": spec.name,
        "Labels": dict(spec.labels),
        "TaskTemplate": template,
        "Mode": {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}},
        # No virtual IP: nothing reaches a stage by its service's name, so none is taken
        # from the job network's addresses.
        "EndpointSpec": {"Mode": "dnsrr"},
    }


def network_for(spec: ContainerSpec, placement: Placement) -> str | None:
    """The network a spec's service joins: the job's own internal overlay for no network
    (Swarm refuses "none"), else the egress network ("": the node's default)."""
    job_id = spec.labels.get(LABEL_JOB)
    if spec.network is Network.NONE and job_id:
        return job_network_name(placement.instance, job_id)
    # The server's own probes (a GPU check that runs `true`) reach nothing of a job's.
    return placement.egress_network or None


def stopper_spec(spec: dict[str, Any], helper_image: str, grace: float) -> dict[str, Any]:
    """A service's spec updated to run `true` in the helper image, forced: Swarm replaces
    the running task (SIGTERM, then SIGKILL after `grace`), the one way to stop it."""
    template = dict(spec["TaskTemplate"])
    container = dict(template["ContainerSpec"])
    container["Image"] = helper_image
    container["Command"] = ["true"]
    container["Args"] = []
    # So that the stage's own task is still told from this one (original_task).
    container["Labels"] = {**(container.get("Labels") or {}), STOPPER_LABEL: "1"}
    container["StopGracePeriod"] = int(max(grace, 0) * 1_000_000_000)
    template["ContainerSpec"] = container
    template["ForceUpdate"] = int(template.get("ForceUpdate", 0)) + 1
    return {**spec, "TaskTemplate": template}


def service_node(service: dict[str, Any]) -> str:
    """The node a service of ours is placed on, from its constraint ("" where it has none)."""
    placement = ((service.get("Spec") or {}).get("TaskTemplate") or {}).get("Placement") or {}
    for constraint in placement.get("Constraints") or []:
        key, _, value = str(constraint).partition("==")
        if key.strip() == "node.id":
            return value.strip()
    return ""


def original_task(tasks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The task that ran the stage: not the one a stop put in its place (marked so),
    else the first made. Swarm trims its times' trailing zeros, so they are compared as
    times, not as text ("…05.1Z" sorts after "…05.12Z")."""
    ran = [t for t in tasks if not _is_stopper(t)] or tasks
    return min(ran, key=lambda t: docker_time(str(t.get("CreatedAt", ""))) or 0.0, default=None)


def _is_stopper(task: dict[str, Any]) -> bool:
    container = ((task.get("Spec") or {}).get("ContainerSpec")) or {}
    return STOPPER_LABEL in (container.get("Labels") or {})


def task_status(task: dict[str, Any] | None) -> str:
    """Swarm's word for where a task is ("" before it has one)."""
    return str(((task or {}).get("Status") or {}).get("State", ""))


def task_state(task: dict[str, Any] | None) -> ContainerState:
    if task is None:
        return ContainerState.RUNNING  # the service is there, its task not yet made
    state = str((task.get("Status") or {}).get("State", ""))
    return ContainerState.EXITED if state in TERMINAL else ContainerState.RUNNING


# What a node answers when the overlay network it must join is still being torn down
# from an earlier network of the same subnet: Swarm hands freed subnets out again at
# once, and the node's kernel has not yet let go of the old VXLAN interface
# (moby/libnetwork#1765, moby/moby#28559). Gone a moment later.
MOMENTARY_REFUSALS = (
    "error creating vxlan interface: file exists",
    "network sandbox join failed",
)


# Where it does not pass: a VXLAN device of that network's VNI was left in the node's
# own namespace (by an engine that stopped mid-way); only its removal lets it pass.
LEFT_DEVICE_HINT = (
    "a VXLAN device of this network may be left on the node: "
    "`ip -d link show type vxlan` there, and `ip link del` the vx-… one no network uses"
)


def refused_for_a_moment(reason: str) -> bool:
    """Whether a rejected task's `reason` is one that passes: the task is made again."""
    return any(text in reason for text in MOMENTARY_REFUSALS)


def task_exit(task: dict[str, Any]) -> ContainerExit:
    """How a terminal task ended, as far as the manager knows: the exit code and Swarm's
    error; whether the kernel killed it for memory it cannot say (exit 137 only)."""
    status = task.get("Status") or {}
    state = str(status.get("State", ""))
    container = status.get("ContainerStatus") or {}
    code = int(container.get("ExitCode") or 0)
    err = str(status.get("Err") or "")
    if state == "rejected" or (state == "failed" and not container.get("ContainerID")):
        code = code or 125  # Docker's own "could not run the container"
    reason = err or str(status.get("Message") or state)
    return ContainerExit(
        exit_code=code,
        oom_killed=None if code == 137 else False,
        started_at=docker_time(str(task.get("CreatedAt") or "")),
        finished_at=docker_time(str(status.get("Timestamp") or "")),
        reason=reason,
    )
