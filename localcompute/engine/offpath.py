"""Container work taken off a job's critical path.

A job's next container is created while the step before it runs (the algorithm's
while fetch downloads, the filter's while the algorithm runs), and an exited
container is removed after its status has moved on, while the next step runs.
Both are best effort: a create that failed ahead is made again on the path, and a
removal that failed is the sweep's. Before a job's final write everything of it
here is settled, so a finished job has no container left.

Crash safety is unchanged: a container created ahead is just a container that
exists, of a later step than its job's status, which the sweep keeps and the step
replaces or uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from localcompute.core.errors import LocalComputeError
from localcompute.runtime import ContainerRuntime, ContainerSpec

log = logging.getLogger(__name__)


class OffPathContainers:
    def __init__(self, runtime: ContainerRuntime) -> None:
        self.runtime = runtime
        self._ahead: dict[str, tuple[str, asyncio.Task[bool]]] = {}  # name → (job, create)
        self._removals: dict[str, set[asyncio.Task[None]]] = {}  # job → removals

    def create_ahead(self, job_id: str, spec: ContainerSpec) -> None:
        """Start creating `spec`'s container now; `take` it when its step comes."""
        if spec.name not in self._ahead:
            self._ahead[spec.name] = (job_id, asyncio.ensure_future(self._create(spec)))

    async def _create(self, spec: ContainerSpec) -> bool:
        try:
            await self.runtime.create(spec)
        except LocalComputeError as e:
            log.debug("creating %s ahead failed (made on the path instead): %s", spec.name, e)
            return False
        return True

    def take(self, name: str) -> asyncio.Task[bool] | None:
        """The creation started ahead for `name` (True once it exists), or None."""
        entry = self._ahead.pop(name, None)
        return None if entry is None else entry[1]

    def remove_later(self, job_id: str, name: str) -> None:
        task = asyncio.ensure_future(self._remove(name))
        self._removals.setdefault(job_id, set()).add(task)

    async def _remove(self, name: str) -> None:
        try:
            await self.runtime.remove(name)
        except LocalComputeError as e:
            log.warning("removing %s failed; the sweep removes it later: %s", name, e)

    async def settle(self, job_id: str) -> None:
        """Finish every removal of the job, and remove what was created ahead for a step
        the job never reached (it ended early)."""
        for name, (owner, create) in list(self._ahead.items()):
            if owner == job_id:
                del self._ahead[name]
                if await create:
                    self.remove_later(job_id, name)
        removals = self._removals.pop(job_id, set())
        if removals:
            await asyncio.gather(*removals)

    async def close(self) -> None:
        """Cancel what is in flight: the sweep of the next start removes what is left."""
        tasks: list[asyncio.Task[bool] | asyncio.Task[None]] = [t for _, t in self._ahead.values()]
        tasks += [t for removals in self._removals.values() for t in removals]
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        self._ahead.clear()
        self._removals.clear()
