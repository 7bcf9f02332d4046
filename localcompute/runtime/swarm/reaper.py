"""What goes of a job once it has ended, on the cluster: its services, its containers and
volumes on its node (a short reap task there, since the manager cannot remove a volume on
another node), and its network. One reap at a time, in a thread of its own, off the
job's path.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import docker

from localcompute.core.settings import Settings
from localcompute.runtime.base import LABEL_JOB
from localcompute.runtime.swarm import nodes, services

log = logging.getLogger(__name__)

REAP_TIMEOUT = 30.0


class Reaper:
    def __init__(
        self,
        settings: Settings,
        api: Callable[[], Any],
        eligible: Callable[[], Mapping[str, nodes.Node]],
    ) -> None:
        self._settings = settings
        self._api = api  # the manager's client, once the runtime is open
        self._eligible = eligible
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="swarm-reap")

    def release(self, job_id: str, node_id: str | None, then: Callable[[], None]) -> None:
        """Reap the job on its node (on the nodes its services name, or every eligible
        one, when it is not known), then run `then`; a reap that fails (the node is down)
        does not run it, and the sweep tries again."""

        def reap() -> None:
            try:
                where = [node_id] if node_id else self.job_nodes(job_id)
                for node in where:
                    self.reap(node, [job_id], [])
            except Exception as e:
                log.warning("swarm: job %s: its reap failed (the sweep retries): %s", job_id, e)
                return
            then()

        self._pool.submit(reap)

    def drain(self) -> None:
        """Wait for the reaps under way (they need the manager's API), then take more."""
        self._pool.shutdown(wait=True)
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="swarm-reap")

    def job_nodes(self, job_id: str) -> list[str]:
        """The nodes a job's services were placed on; every eligible one when none is left."""
        api = self._api()
        if api is None:
            return []
        found = api.services(filters={"label": f"{LABEL_JOB}={job_id}"})
        placed = {services.service_node(s) for s in found} - {""}
        return sorted(placed) or list(self._eligible())

    def reap(self, node_id: str, jobs: list[str], stages: list[str]) -> None:
        """Remove `jobs` (their services, containers, volumes and networks) and `stages`'
        ended containers from the node. Blocking."""
        api = self._api()
        if api is None:
            return
        node = api.inspect_node(node_id)
        state = (node.get("Status") or {}).get("State")
        if state != "ready":
            # Nothing can run there now: the job's data folder stays, and the sweep
            # reaps once the node is back.
            host = (node.get("Description") or {}).get("Hostname", node_id)
            raise OSError(f"node {host} is {state}: its reap waits for it")
        for job_id in jobs:
            for service in api.services(filters={"label": f"{LABEL_JOB}={job_id}"}):
                with contextlib.suppress(docker.errors.NotFound):
                    api.remove_service(service["ID"])
        default_socket = self._settings.runtime.node_socket
        known = self._eligible().get(node_id)
        nodes.run_reap(
            api,
            node_id=node_id,
            helper_image=self._settings.docker.helper_image,
            node_socket=known.socket(default_socket) if known else default_socket,
            jobs=jobs,
            stages=stages,
            timeout=REAP_TIMEOUT,
        )
        for job_id in jobs:
            for network in api.networks(filters={"label": f"{LABEL_JOB}={job_id}"}):
                nodes.remove_network(api, network["Id"])
