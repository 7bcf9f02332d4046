"""The nodes of a swarm that may run jobs, what each offers, and the short tasks the server
runs on a node: the start-up check and the reap. Blocking calls of docker-py's APIClient,
made off the event loop by the runtime.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import docker

from localcompute.core.errors import ConfigError
from localcompute.core.settings import RuntimeSettings
from localcompute.helper.contract import HELPER_IN_IMAGE
from localcompute.runtime.base import LABEL_STAGE, NodeResources
from localcompute.runtime.swarm.services import TERMINAL

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 120.0
# Free bytes where the node keeps its containers: a container's root is on that disk.
FREE_DISK = "import os; s = os.statvfs('/'); print(s.f_bavail * s.f_frsize)"


# A node whose Docker socket is not where [runtime] node_socket says carries its path in
# this label (two engines on one machine cannot share one path).
SOCKET_LABEL = "localcompute.node_socket"


@dataclass(frozen=True)
class Node:
    node_id: str
    hostname: str
    resources: NodeResources

    def socket(self, default: str) -> str:
        return self.resources.labels.get(SOCKET_LABEL) or default


def eligible(api: Any, labels: list[str]) -> list[Node]:
    """Ready, active nodes that carry every one of `labels` ("key=value" or "key")."""
    found = []
    for node in api.nodes():
        spec, status = node.get("Spec") or {}, node.get("Status") or {}
        have = spec.get("Labels") or {}
        if spec.get("Availability") != "active" or status.get("State") != "ready":
            continue
        if all(_has_label(have, wanted) for wanted in labels):
            found.append(_node(node))
    return sorted(found, key=lambda n: n.node_id)


def _has_label(have: dict[str, str], wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    return key in have and (not sep or have[key] == value)


def _node(node: dict[str, Any]) -> Node:
    description = node.get("Description") or {}
    resources = description.get("Resources") or {}
    gpus = tuple(
        str(g["NamedResourceSpec"]["Value"])
        for g in resources.get("GenericResources") or []
        if (g.get("NamedResourceSpec") or {}).get("Kind") == "gpu"
    )
    hostname = str(description.get("Hostname", ""))
    spec = node.get("Spec") or {}
    return Node(
        node_id=str(node["ID"]),
        hostname=hostname,
        resources=NodeResources(
            node=str(node["ID"]),
            cores=tuple(range(int(resources.get("NanoCPUs", 0)) // 1_000_000_000)),
            ram_bytes=int(resources.get("MemoryBytes", 0)),
            disk_bytes=0,  # measured on the node by check_all
            gpus=gpus,
            cpu_model=f"swarm node {hostname}",
            labels=dict(spec.get("Labels") or {}),
        ),
    )


def none_eligible(labels: list[str]) -> str:
    which = f"with the labels {labels} " if labels else ""
    return f"[runtime] no ready, active Swarm node {which}can run jobs"


def check_all(settings: RuntimeSettings, helper_image: str) -> list[Node]:
    """The eligible nodes, each with its free disk measured by a task there; a node that
    cannot run the helper image is left out, and said why. ConfigError when none is left."""
    api = docker.APIClient(base_url=settings.manager, version="auto", timeout=60)
    try:
        found = eligible(api, settings.node_labels)
        if not found:
            raise ConfigError(none_eligible(settings.node_labels))
        usable, refused = [], []
        for node in found:
            free, why = _free_disk(api, node, helper_image)
            if why:
                log.warning("swarm: node %s cannot run jobs: %s", node.hostname, why)
                refused.append(f"{node.hostname} ({node.node_id}): {why}")
                continue
            usable.append(
                Node(
                    node.node_id,
                    node.hostname,
                    NodeResources(**{**node.resources.__dict__, "disk_bytes": free}),
                )
            )
        if not usable:
            raise ConfigError("no Swarm node can run jobs: " + "; ".join(refused))
        return usable
    except docker.errors.DockerException as e:
        raise ConfigError(f"[runtime] manager {settings.manager} does not answer: {e}") from e
    finally:
        api.close()


def _free_disk(api: Any, node: Node, helper_image: str) -> tuple[int, str]:
    """(free bytes, "") or (0, why the node cannot run the helper image)."""
    name = f"lc-node-check-{node.node_id[:12]}-{uuid.uuid4().hex[:6]}"
    task = run_task(
        api,
        name=name,
        node_id=node.node_id,
        container={
            "Image": helper_image,
            "Command": ["python3", "-c", FREE_DISK],
            "Labels": {LABEL_STAGE: "node-check"},
        },
        timeout=CHECK_TIMEOUT,
    )
    try:
        status = (task or {}).get("Status") or {}
        if status.get("State") != "complete":
            return 0, str(status.get("Err") or status.get("Message") or "it did not answer")
        out = b"".join(api.service_logs(name, stdout=True, stderr=True)).decode().strip()
        return int(out.splitlines()[-1]), ""
    except (ValueError, IndexError):
        return 0, "its free disk could not be read"
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_service(name)


def run_task(
    api: Any,
    *,
    name: str,
    node_id: str,
    container: dict[str, Any],
    timeout: float,
    labels: dict[str, str] | None = None,
) -> dict[str, Any] | None:
    """Run one replicated-job task on the node and wait for its end; its last state (None
    when it made none, or vanished)."""
    body = {
        "Name": name,
        "Labels": labels or dict(container.get("Labels") or {}),
        "TaskTemplate": {
            "ContainerSpec": container,
            "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
            "Placement": {"Constraints": [f"node.id=={node_id}"]},
        },
        "Mode": {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}},
    }
    api._result(api._post_json(api._url("/services/create"), data=body), True)
    deadline = time.monotonic() + timeout
    last: dict[str, Any] | None = None
    delay = 0.05
    while time.monotonic() < deadline:
        tasks = api.tasks(filters={"service": name})
        if tasks:
            last = tasks[0]
            if (last.get("Status") or {}).get("State") in TERMINAL:
                return last
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    return last


def run_reap(
    api: Any,
    *,
    node_id: str,
    helper_image: str,
    node_socket: str,
    jobs: list[str],
    stages: list[str],
    timeout: float,
) -> None:
    """Remove `jobs`' containers and volumes, and `stages`' ended containers, on the node,
    with a task that removes its own container last (helper/reap.py)."""
    if not jobs and not stages:
        return
    name = f"lc-reap-{uuid.uuid4().hex[:12]}"
    args = [f"--job={j}" for j in jobs] + [f"--stage={s}" for s in stages]
    try:
        task = run_task(
            api,
            name=name,
            node_id=node_id,
            container={
                "Image": helper_image,
                "Command": ["python3", f"{HELPER_IN_IMAGE}/reap.py", "--socket=/run/docker.sock"],
                "Args": args,
                "Env": ["LOCALCOMPUTE_TASK={{.Task.ID}}"],
                "User": "0",  # the socket is root's
                "Labels": {LABEL_STAGE: "reap"},
                "Mounts": [{"Type": "bind", "Source": node_socket, "Target": "/run/docker.sock"}],
            },
            timeout=timeout,
        )
        status = (task or {}).get("Status") or {}
        if status.get("State") not in TERMINAL or status.get("State") == "rejected":
            # The node is down, or cannot run the helper: what is there stays, and the
            # sweep tries again (the job's data folder on the server says so).
            why = status.get("Err") or status.get("Message") or "no task"
            raise OSError(f"the reap on node {node_id} did not run: {why}")
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_service(name)


def remove_network(api: Any, network_id: str, attempts: int = 20) -> None:
    """A job's network, once its services' tasks have let go of it."""
    for _ in range(attempts):
        try:
            api.remove_network(network_id)
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as e:
            last = e
            time.sleep(0.25)
    log.warning("swarm: network %s could not be removed: %s", network_id, last)
