"""The cluster as the Swarm runtime sees it: the manager (a Swarm manager, or the start
is refused), the eligible nodes and what each offers, where a job's containers go (the
node its allocation names), and the reaper that clears an ended job off its node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from localcompute.core.errors import ConfigError, ContainerError
from localcompute.core.settings import Settings
from localcompute.core.stagekey import StageKey
from localcompute.runtime.base import ContainerSpec, NodeResources
from localcompute.runtime.local.docker import DockerRuntime
from localcompute.runtime.swarm import nodes, services
from localcompute.runtime.swarm.reaper import Reaper

log = logging.getLogger(__name__)


class SwarmCluster(DockerRuntime):
    """DockerRuntime pointed at the manager (its images, its plumbing), with the nodes."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            short_workers=max(4, min(32, settings.total_slots + 4)),
            long_workers=settings.total_slots * 2 + 4,
            base_url=settings.runtime.manager,
        )
        self._settings = settings
        self._runtime = settings.runtime
        self._nodes: dict[str, nodes.Node] = {}  # the eligible nodes, by id
        self._key: StageKey | None = None
        # Where ended jobs are reaped, one at a time, off their path.
        self._reaper = Reaper(settings, lambda: self._api, lambda: self._nodes)

    async def resources(self, data_dir: Path) -> list[NodeResources]:
        """The eligible nodes, each checked: a node that lacks the helper image (or does
        not answer) is left out, with Docker's words in the log."""
        found = await asyncio.to_thread(
            nodes.check_all, self._runtime, self._settings.docker.helper_image
        )
        return [n.resources for n in found]

    async def open(self) -> None:
        await super().open()
        info = await self._short(lambda: self._api.info())
        if not (info.get("Swarm") or {}).get("ControlAvailable"):
            await self.close()
            raise ConfigError(
                f"[runtime] manager {self._runtime.manager} is not a Swarm manager "
                f"(its swarm state: {(info.get('Swarm') or {}).get('LocalNodeState', '?')})"
            )
        found = await asyncio.to_thread(nodes.eligible, self._api, self._runtime.node_labels)
        if not found:
            await self.close()
            raise ConfigError(nodes.none_eligible(self._runtime.node_labels))
        self._nodes = {n.node_id: n for n in found}
        self._key = await asyncio.to_thread(StageKey.load, self._settings.data_dir)
        log.info(
            "swarm: jobs run on %s; no core pinning there, a soft disk quota",
            ", ".join(f"node {n.hostname} ({n.node_id})" for n in found),
        )
        # What the node checks of resources() left on the nodes.
        for node_id in self._nodes:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self._reaper.reap, node_id, [], ["node-check"])

    def _node_of(self, spec: ContainerSpec) -> str:
        """The node a container runs on: the one the pool placed its job on (one of no
        node, a start-up probe: the first eligible one)."""
        if not self._nodes:
            raise ContainerError("the Swarm runtime is not open")
        if not spec.node:
            return next(iter(self._nodes))
        if spec.node not in self._nodes:
            raise ContainerError(
                f"node {spec.node} is not among the eligible nodes now "
                f"({', '.join(self._nodes)}): the job cannot run there"
            )
        return spec.node

    def _placement(self, instance: str, node_id: str) -> services.Placement:
        return services.Placement(
            instance=instance,
            node_id=node_id,
            server_url=self._runtime.server_url.rstrip("/"),
            egress_network=self._runtime.egress_network,
            helper_image=self._settings.docker.helper_image,
        )

    async def close(self) -> None:
        # The reaps under way finish first: they need the manager's API.
        await asyncio.to_thread(self._reaper.drain)
        await super().close()
