"""Jobs on the nodes of a Docker Swarm, behind the same ContainerRuntime as the local engine.

A job container is a replicated-job service (services.py) on the node its job's
allocation names (cluster.py); "created" is a spec held here until start() makes the
service, since Swarm has no created service that has not started. Images are the
manager's engine's business (the methods of DockerRuntime, pointed at the manager); what
runs where is the manager's, asked through its tasks (manager.py). Logs come from the
service's stream (logs.py); a job's disk is measured on its node (meter.py); what the
manager cannot do on a node (remove a job's containers and volumes) a short reap task
does there (reaper.py, helper/reap.py).

Weaker than the local engine, as Swarm is: no core pinning (cpuset is ignored), a soft
disk quota (SwarmQuota), and OOM seen only as exit 137.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcompute.core.errors import ConfigError, ContainerError
from localcompute.core.provenance import RanImage
from localcompute.core.settings import Settings
from localcompute.runtime.base import (
    LABEL_INSTANCE,
    LABEL_JOB,
    LABEL_STAGE,
    ContainerExit,
    ContainerInfo,
    ContainerSpec,
    ContainerState,
    Network,
)
from localcompute.runtime.logfile import write_capped
from localcompute.runtime.pump import pumped
from localcompute.runtime.quota import DiskQuota
from localcompute.runtime.swarm import manager, services
from localcompute.runtime.swarm.cluster import SwarmCluster
from localcompute.runtime.swarm.logs import ServiceLogStream, copy_service_logs
from localcompute.runtime.swarm.meter import last_reading, meter_name, meter_spec
from localcompute.runtime.swarm.quota import SwarmQuota

log = logging.getLogger(__name__)

# How often a task is asked about while it is awaited: quickly at first (a trivial stage
# ends in well under a second), then less often.
POLL_FIRST = 0.05
POLL_MOST = 0.25
# How often the node of an awaited task is asked whether it is still up.
NODE_CHECK_SECONDS = 2.0
# How long a task may take to begin (the node pulls its image meanwhile).
START_TIMEOUT = 600.0
# A task the node refused for a moment (services.refused_for_a_moment) is made again,
# after a pause that grows, up to this many tries in all.
REFUSED_TRIES = 3
REFUSED_PAUSE = 0.5
REMOVED_CHECKS = 100  # 5 s at POLL_FIRST: then the create says what stands in its way
# How long the log stream is read after its task ended: the node ships the last lines.
LOG_TAIL_SECONDS = 0.1


@dataclass
class _Job:
    """What the runtime knows of a job it runs: its instance (the reap and the network are
    per job) and its node, learnt from its containers' specs."""

    instance: str
    node_id: str


class SwarmRuntime(SwarmCluster):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._created: dict[str, ContainerSpec] = {}
        self._tasks: dict[str, str] = {}  # service → the id of the task that ran it
        self._jobs: dict[str, _Job] = {}
        # Job id → bytes its volumes hold, as its meter last said; and the meters' readers.
        self._usage: dict[str, int] = {}
        self._meters: dict[str, asyncio.Task[None]] = {}
        self._network_locks: dict[str, asyncio.Lock] = {}

    @property
    def shares_host_files(self) -> bool:
        return False  # a job's folder is its volumes on a node

    # -- the job's disk ------------------------------------------------------------

    async def disk_quota(self, data_dir: Path, wanted: str) -> tuple[DiskQuota, str]:
        if wanted in ("xfs", "loop"):
            raise ConfigError(
                f"[pool] disk_quota = {wanted}: a job's disk on a Swarm node is its volumes "
                "there, which no quota of this host limits; use auto or watch"
            )
        return (
            SwarmQuota(self.release_job, self.usage),
            "no quota of this host limits a node's volumes: a meter on the node measures them",
        )

    async def leftover_storage(self, jobs_dir: Path) -> list[Path]:
        return await asyncio.to_thread(SwarmQuota.held, jobs_dir)

    # -- containers as services ---------------------------------------------------

    async def create(self, spec: ContainerSpec) -> None:
        """Held until start(); the mounts are checked now. One left over under the same
        name goes first, as on the local engine."""
        services.service_mounts(spec, spec.labels.get(LABEL_INSTANCE, ""))
        node_id = self._node_of(spec)
        if await self._service(spec.name) is not None:
            await self.remove(spec.name)
        job_id = spec.labels.get(LABEL_JOB)
        if job_id:
            self._jobs[job_id] = _Job(spec.labels.get(LABEL_INSTANCE, ""), node_id)
            if spec.network is Network.NONE:
                # Made now, while the fetch runs (the engine creates the algorithm ahead).
                placement = self._placement(spec.labels.get(LABEL_INSTANCE, ""), node_id)
                await self._ensure_job_network(
                    services.job_network_name(placement.instance, job_id), spec
                )
        self._created[spec.name] = spec

    async def start(self, name: str) -> None:
        """Make the service, and return once its task has begun (or ended): a task the
        node refuses (no such image, a device it lacks) is the start's failure."""
        spec = self._created.pop(name, None)
        if spec is None:
            raise ContainerError(f"no container {name} to start", status=404)
        placement = self._placement(spec.labels.get(LABEL_INSTANCE, ""), self._node_of(spec))
        network = services.network_for(spec, placement)
        job_id = spec.labels.get(LABEL_JOB, "")
        stage = spec.labels.get(LABEL_STAGE, "")
        token = self._key.token(job_id, stage) if self._key and job_id else ""
        body = services.service_body(spec, placement, network=network, token=token)
        if job_id and stage in ("fetch", "algorithm"):
            await self._meter(spec, placement, start=stage == "fetch")
        for attempt in range(1, REFUSED_TRIES + 1):
            await self._short(lambda: manager.create_service(self._api, body))
            task, down = await self._poll(
                name, lambda t: services.task_status(t) not in services.NOT_STARTED, START_TIMEOUT
            )
            if down:
                raise ContainerError(down)
            if task is None or services.task_status(task) in services.NOT_STARTED:
                why = ((task or {}).get("Status") or {}).get("Message", "no task")
                raise ContainerError(f"{name} did not start in {START_TIMEOUT:g} s ({why})")
            self._tasks[name] = str(task["ID"])
            if services.task_status(task) != "rejected":
                return
            reason = services.task_exit(task).reason
            momentary = services.refused_for_a_moment(reason)
            if attempt == REFUSED_TRIES or not momentary:
                # Past its tries, such a refusal is a device the node kept, not a moment.
                hint = f" ({services.LEFT_DEVICE_HINT})" if momentary else ""
                raise ContainerError(f"the node refused to run it: {reason}{hint}")
            # Its container never ran, so making the service again runs nothing twice.
            log.warning("%s: the node refused it for now (%s); trying again", name, reason)
            self._tasks.pop(name, None)
            await self._short(lambda: self._api.remove_service(name))
            await asyncio.sleep(REFUSED_PAUSE * attempt)
            for _ in range(REMOVED_CHECKS):  # the name is free once the service is gone
                if await self._service(name) is None:
                    break
                await asyncio.sleep(POLL_FIRST)

    async def wait(self, name: str) -> ContainerExit:
        """Until the stage's task is terminal; a node that goes down (or a service that
        goes) ends the wait with `lost` and a reason that names the node."""
        task, down = await self._poll(
            name, lambda t: services.task_state(t) is ContainerState.EXITED, None
        )
        if down:
            return ContainerExit(-1, None, None, time.time(), down, True)
        assert task is not None  # _poll returns a ready task or a reason
        return services.task_exit(task)

    async def _poll(
        self, name: str, ready: Callable[[dict[str, Any]], bool], give_up_after: float | None
    ) -> tuple[dict[str, Any] | None, str]:
        """The stage's task once `ready`, asked quickly at first and then less often;
        or why it never will be: its node went down, or its service is gone. Past
        `give_up_after` seconds, the task as it is."""
        deadline = None if give_up_after is None else time.monotonic() + give_up_after
        next_node_check = time.monotonic() + NODE_CHECK_SECONDS
        delay = POLL_FIRST
        while True:
            task = await self._task(name)
            if task is not None and ready(task):
                return task, ""
            if task is None and name not in self._created and await self._service(name) is None:
                return None, "its service is gone"
            if task is not None and time.monotonic() > next_node_check:
                next_node_check = time.monotonic() + NODE_CHECK_SECONDS
                down = await self._node_down(str(task.get("NodeID", "")))
                if down:
                    return task, down
            if deadline is not None and time.monotonic() > deadline:
                return task, ""
            await asyncio.sleep(delay)
            delay = min(delay * 2, POLL_MOST)

    async def state(self, name: str) -> ContainerState:
        if name in self._created:
            return ContainerState.CREATED
        if await self._service(name) is None:
            return ContainerState.MISSING
        return services.task_state(await self._task(name))

    async def stop(self, name: str, grace: float) -> None:
        """Swarm cannot stop a replicated-job's task (removing the service leaves its
        container running, moby#42789): the service is updated to run `true` in the
        helper image instead, which replaces the task, SIGTERM then SIGKILL after `grace`."""
        self._created.pop(name, None)
        service = await self._service(name)
        if service is None:
            return
        if services.task_state(await self._task(name)) is ContainerState.EXITED:
            return
        spec = services.stopper_spec(service["Spec"], self._settings.docker.helper_image, grace)
        version = service["Version"]["Index"]
        try:
            await self._short(
                lambda: manager.update_service(self._api, service["ID"], spec, version)
            )
        except ContainerError as e:
            if e.details.get("status") != 404:
                raise

    async def remove(self, name: str) -> None:
        """The service goes; its container stays on the node until the job's reap (a
        server's own probe, of no job, is reaped at once)."""
        self._created.pop(name, None)
        self._tasks.pop(name, None)
        service = await self._service(name)
        if service is None:
            return
        try:
            await self._short(lambda: self._api.remove_service(name))
        except ContainerError as e:
            if e.details.get("status") != 404:
                raise
        labels = service["Spec"].get("Labels") or {}
        node_id = services.service_node(service)
        if not labels.get(LABEL_JOB) and labels.get(LABEL_STAGE) and node_id:
            await asyncio.to_thread(self._reaper.reap, node_id, [], [labels[LABEL_STAGE]])

    async def list_labelled(self, instance: str) -> list[ContainerInfo]:
        found = await self._short(
            lambda: self._api.services(filters={"label": f"{LABEL_INSTANCE}={instance}"})
        )
        infos = [
            ContainerInfo(
                name,
                spec.labels.get(LABEL_JOB, ""),
                spec.labels.get(LABEL_STAGE, ""),
                ContainerState.CREATED,
            )
            for name, spec in self._created.items()
            if spec.labels.get(LABEL_INSTANCE) == instance
        ]
        for service in found:
            labels = service["Spec"].get("Labels") or {}
            name = service["Spec"]["Name"]
            if labels.get(LABEL_STAGE) in ("reap", "meter"):
                continue  # the runtime's own: the meter goes with its job's reap
            infos.append(
                ContainerInfo(
                    name,
                    labels.get(LABEL_JOB, ""),
                    labels.get(LABEL_STAGE, ""),
                    services.task_state(await self._task(name)),
                )
            )
        return infos

    # -- logs ---------------------------------------------------------------------

    async def follow_logs(self, name: str) -> AsyncIterator[bytes]:
        """The service's log stream, which Swarm never ends: cut here once the task is
        terminal and the node has had a moment to ship the last lines."""
        stream = ServiceLogStream(self._long_api, name)

        async def closer() -> None:
            await self.wait(name)
            await asyncio.sleep(LOG_TAIL_SECONDS)
            stream.cut()

        closing = asyncio.ensure_future(closer())
        try:
            async for batch in pumped(stream.open, lambda pump: self._long(pump, f"follow-{name}")):
                yield batch
        finally:
            closing.cancel()
            stream.close()

    async def logs_to_file(self, name: str, path: Path, *, limit: int, append: bool) -> int:
        try:
            return await self._long(
                lambda: copy_service_logs(self._long_api, name, path, limit=limit, append=append),
                f"logs-{name}",
            )
        except ContainerError as e:
            if e.details.get("status") != 404:
                raise
            return write_capped([], path, limit=limit, append=append)

    # -- the job's meter, network and reap -------------------------------------------

    def usage(self, job_id: str) -> int | None:
        """Bytes the job's volumes hold on its node, as last measured; None before."""
        return self._usage.get(job_id)

    async def _meter(self, spec: ContainerSpec, placement: services.Placement, start: bool) -> None:
        """The job's meter: a task on its node that measures the job's data volumes every
        meter.METER_SECONDS (read only, no network) and says it in its log, which is read here.
        Started with the fetch; after a restart, read again from the algorithm's start."""
        job_id = spec.labels[LABEL_JOB]
        name = meter_name(placement.instance, job_id)
        if start:
            meter = meter_spec(spec, placement.instance, placement.helper_image)
            network = services.network_for(meter, placement)
            if network is not None:
                await self._ensure_job_network(network, meter)
            if await self._service(name) is None:
                body = services.service_body(meter, placement, network=network, token="")
                await self._short(lambda: manager.create_service(self._api, body))
        if job_id not in self._meters and (start or await self._service(name) is not None):
            self._meters[job_id] = asyncio.ensure_future(self._read_meter(job_id, name))

    async def _read_meter(self, job_id: str, name: str) -> None:
        with contextlib.suppress(Exception):  # the meter goes with the job's reap
            async for batch in self.follow_logs(name):
                reading = last_reading(batch)
                if reading is not None:
                    self._usage[job_id] = reading

    async def _ensure_job_network(self, network: str, spec: ContainerSpec) -> None:
        """Made once: the meter and the algorithm made ahead both want it, at once,
        while the fetch runs."""
        instance, job_id = spec.labels.get(LABEL_INSTANCE, ""), spec.labels.get(LABEL_JOB, "")
        async with self._network_locks.setdefault(network, asyncio.Lock()):
            await self._short(
                lambda: manager.ensure_job_network(self._api, network, instance, job_id)
            )

    def release_job(self, job_id: str, then: Callable[[], None]) -> None:
        """Everything of an ended job on the cluster goes: its services, its containers
        and volumes on the node (the reap task), its network; then `then` runs (the job's
        data folder on the server goes, the sign that nothing of it is left). Off the
        job's path: its final status does not wait for the reap. A reap that fails (the
        node is down) leaves the folder, and the sweep tries again."""
        job = self._jobs.pop(job_id, None)
        reader = self._meters.pop(job_id, None)
        if reader is not None:
            reader.get_loop().call_soon_threadsafe(reader.cancel)
        self._usage.pop(job_id, None)
        if job is not None:
            self._network_locks.pop(services.job_network_name(job.instance, job_id), None)

        # A job resumed after a restart may not have said where it ran: then its
        # services say, or (they are gone) every node is reaped of it.
        self._reaper.release(job_id, job.node_id if job is not None else None, then)

    async def ran_image(self, name: str) -> RanImage | None:
        """The image the stage's task names, as the manager has it: the node's own copy
        is reachable only through a task (the lab's nodes load the same image files, so
        the ids agree; a registry-pinned reference carries its digest either way)."""
        task = await self._task(name)
        if task is None:
            return None
        spec = (task.get("Spec") or {}).get("ContainerSpec") or {}
        ref = str(spec.get("Image") or "")
        return await self.image_identity(ref) if ref else None

    # -- the manager's answers ----------------------------------------------------

    async def _service(self, name: str) -> dict[str, Any] | None:
        return await self._short(lambda: manager.find_service(self._api, name))

    async def _task(self, name: str) -> dict[str, Any] | None:
        own = await self._short(lambda: manager.service_tasks(self._api, name))
        known = self._tasks.get(name)
        for task in own:
            if task.get("ID") == known:
                return task
        return services.original_task(own)

    async def _node_down(self, node_id: str) -> str:
        """Why the node is gone, in words naming it; "" while it is up (or the task has
        no node yet)."""
        return await self._short(lambda: manager.node_down(self._api, node_id))
