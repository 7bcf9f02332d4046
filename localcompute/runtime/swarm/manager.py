"""The calls the Swarm runtime makes of the manager, each blocking (docker-py's
APIClient), run off the event loop by the runtime. Services are created and updated with
the raw API, since docker-py's helpers cannot say every field (replicated-job mode)."""

from __future__ import annotations

from typing import Any

import docker

from localcompute.runtime.base import LABEL_INSTANCE, LABEL_JOB


def create_service(api: Any, body: dict[str, Any]) -> None:
    api._result(api._post_json(api._url("/services/create"), data=body), True)


def update_service(api: Any, service_id: str, spec: dict[str, Any], version: int) -> None:
    api._result(
        api._post_json(
            api._url("/services/{0}/update", service_id), data=spec, params={"version": version}
        ),
        True,
    )


def find_service(api: Any, name: str) -> dict[str, Any] | None:
    try:
        return dict(api.inspect_service(name))
    except docker.errors.NotFound:
        return None


def service_tasks(api: Any, name: str) -> list[dict[str, Any]]:
    return [dict(t) for t in api.tasks(filters={"service": name})]


def node_down(api: Any, node_id: str) -> str:
    """Why the node is gone, in words naming it; "" while it is up (or not known)."""
    if not node_id:
        return ""
    try:
        node = api.inspect_node(node_id)
    except docker.errors.APIError:
        return ""
    state = str((node.get("Status") or {}).get("State", ""))
    if state in ("down", "disconnected"):
        host = (node.get("Description") or {}).get("Hostname", "")
        return f"node {host} ({node_id}) went {state} while the job ran there"
    return ""


def ensure_job_network(api: Any, network: str, instance: str, job_id: str) -> None:
    """The job's internal overlay (Swarm has no "none" network for a service), once."""
    if any(n.get("Name") == network for n in api.networks(names=[network])):
        return
    api.create_network(
        network,
        driver="overlay",
        internal=True,
        labels={LABEL_INSTANCE: instance, LABEL_JOB: job_id},
    )
