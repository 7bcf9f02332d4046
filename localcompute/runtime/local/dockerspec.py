"""A ContainerSpec in the local Docker engine's words (create_container's arguments, its
network modes), and Docker's container status in the runtime's. Pure: no calls."""

from __future__ import annotations

from typing import Any, Literal

import docker.types

from localcompute.runtime import hardening
from localcompute.runtime.base import ContainerSpec, ContainerState, Network

# What covers a hidden path: an empty tmpfs, read-only so it stays empty (runc gives it
# the covered folder's owner and mode).
HIDDEN_SIZE = 4096


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
    profile = hardening.seccomp_profile(spec.oci_runtime, hardened=spec.hardened)
    host_config = api.create_host_config(
        mounts=[
            *(
                docker.types.Mount(m.target, str(m.source), type="bind", read_only=m.read_only)
                for m in spec.mounts
            ),
            *(
                docker.types.Mount(
                    path,
                    None,
                    type="tmpfs",
                    read_only=True,
                    tmpfs_size=HIDDEN_SIZE,
                )
                for path in spec.hidden
            ),
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
        security_opt=[
            "no-new-privileges",
            *([f"seccomp={profile}"] if profile is not None else []),
        ],
        read_only=spec.hardened,
        tmpfs={"/tmp": hardening.tmpfs_options(spec.memory_bytes)} if spec.hardened else None,
        runtime=spec.oci_runtime or None,
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


def container_state(status: str) -> ContainerState:
    """Docker's Status in the runtime's words: removing and dead are ended containers;
    paused and restarting have not ended."""
    if status == "created":
        return ContainerState.CREATED
    if status in ("running", "paused", "restarting"):
        return ContainerState.RUNNING
    return ContainerState.EXITED
