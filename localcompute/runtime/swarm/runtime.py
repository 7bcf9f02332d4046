"""Jobs on the nodes of a Docker Swarm, behind the same ContainerRuntime as the local engine.

A job container is a replicated-job service (services.py) on the node the runtime chose;
"created" is a spec held here until start() makes the service, since Swarm has no created
service that has not started. Images are the manager's engine's business (the methods of
DockerRuntime, pointed at the manager); what runs where is the manager's, asked through
its tasks. What the manager cannot do on a node (remove a job's containers and volumes) a
short reap task does there, with the node's Docker socket mounted (helper/reap.py).

Weaker than the local engine, as Swarm is: no core pinning (cpuset is ignored), a soft
disk quota (SwarmQuota), and OOM seen only as exit 137.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

from localcompute.core.errors import ConfigError, ContainerError
from localcompute.core.settings import Settings
from localcompute.core.stagekey import StageKey
from localcompute.runtime.base import (
    DATA_AREAS,
    LABEL_INSTANCE,
    LABEL_JOB,
    LABEL_STAGE,
    ContainerExit,
    ContainerInfo,
    ContainerSpec,
    ContainerState,
    Mount,
    Network,
    NodeResources,
)
from localcompute.runtime.local.docker import DockerRuntime
from localcompute.runtime.logfile import write_capped
from localcompute.runtime.pump import pumped
from localcompute.runtime.quota import DiskQuota
from localcompute.runtime.swarm import nodes, services
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
# How long the log stream is read after its task ended: the node ships the last lines.
LOG_TAIL_SECONDS = 0.1
REAP_TIMEOUT = 30.0
# The meter: a job's volumes measured on its node, as its disk quota's watcher reads them.
METER_SECONDS = 0.5
METER = (
    "import os, sys, time\n"
    "def size(top):\n"
    "    total = 0\n"
    "    for root, dirs, files in os.walk(top):\n"
    "        for name in dirs + files:\n"
    "            try:\n"
    "                total += os.lstat(os.path.join(root, name)).st_blocks * 512\n"
    "            except OSError:\n"
    "                pass\n"
    "    return total\n"
    "while True:\n"
    "    print(sum(size(top) for top in sys.argv[1:]), flush=True)\n"
    f"    time.sleep({METER_SECONDS})\n"
)


@dataclass
class _Job:
    """What the runtime knows of a job it runs: its instance (the reap and the network are
    per job) and its node, learnt from its containers' specs."""

    instance: str
    node_id: str


class SwarmRuntime(DockerRuntime):
    def __init__(self, settings: Settings) -> None:
        super().__init__(
            short_workers=max(4, min(32, settings.total_slots + 4)),
            long_workers=settings.total_slots * 2 + 4,
            base_url=settings.runtime.manager,
        )
        self._settings = settings
        self._runtime = settings.runtime
        self._created: dict[str, ContainerSpec] = {}
        self._tasks: dict[str, str] = {}  # service → the id of the task that ran it
        self._jobs: dict[str, _Job] = {}
        self._nodes: dict[str, nodes.Node] = {}  # the eligible nodes, by id
        self._key: StageKey | None = None
        # Job id → bytes its volumes hold, as its meter last said; and the meters' readers.
        self._usage: dict[str, int] = {}
        self._meters: dict[str, asyncio.Task[None]] = {}
        self._network_locks: dict[str, asyncio.Lock] = {}
        # Where ended jobs are reaped, one at a time, off their path.
        self._reaper = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="swarm-reap")

    # -- lifecycle and the nodes -----------------------------------------------

    async def resources(self, data_dir: Path) -> list[NodeResources]:
        """The eligible nodes, each checked: a node that lacks the helper image (or does
        not answer) is left out, with Docker's words in the log."""
        found = await asyncio.to_thread(
            nodes.check_all, self._runtime, self._settings.docker.helper_image
        )
        return [n.resources for n in found]

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
                await asyncio.to_thread(self._reap_blocking, node_id, [], ["node-check"])

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
        await self._short(
            lambda: self._api._result(
                self._api._post_json(self._api._url("/services/create"), data=body), True
            )
        )
        deadline = time.monotonic() + START_TIMEOUT
        next_node_check = time.monotonic() + NODE_CHECK_SECONDS
        delay = POLL_FIRST
        while True:
            task = await self._task(name)
            state = str(((task or {}).get("Status") or {}).get("State", ""))
            if task is not None and time.monotonic() > next_node_check:
                next_node_check = time.monotonic() + NODE_CHECK_SECONDS
                down = await self._node_down(str(task.get("NodeID", "")))
                if down:
                    raise ContainerError(down)
            if task is not None and state not in services.NOT_STARTED:
                self._tasks[name] = str(task["ID"])
                if state == "rejected":
                    exit_ = services.task_exit(task)
                    raise ContainerError(f"the node refused to run it: {exit_.reason}")
                return
            if time.monotonic() > deadline:
                why = ((task or {}).get("Status") or {}).get("Message", "no task")
                raise ContainerError(f"{name} did not start in {START_TIMEOUT:g} s ({why})")
            await asyncio.sleep(delay)
            delay = min(delay * 2, POLL_MOST)

    async def wait(self, name: str) -> ContainerExit:
        """Until the stage's task is terminal; a node that goes down ends the wait with
        `lost` and a reason that names the node."""
        delay = POLL_FIRST
        next_node_check = time.monotonic() + NODE_CHECK_SECONDS
        while True:
            if await self._service(name) is None and name not in self._created:
                return ContainerExit(-1, None, None, time.time(), "its service is gone", True)
            task = await self._task(name)
            if task is not None and services.task_state(task) is ContainerState.EXITED:
                return services.task_exit(task)
            if task is not None and time.monotonic() > next_node_check:
                next_node_check = time.monotonic() + NODE_CHECK_SECONDS
                down = await self._node_down(str(task.get("NodeID", "")))
                if down:
                    return ContainerExit(-1, None, None, time.time(), down, True)
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
        spec = service["Spec"]
        container = spec["TaskTemplate"]["ContainerSpec"]
        container["Image"] = self._settings.docker.helper_image
        container["Command"] = ["true"]
        container["Args"] = []
        # So that the stage's own task is still told from this one (services.original_task).
        container["Labels"] = {**(container.get("Labels") or {}), services.STOPPER_LABEL: "1"}
        container["StopGracePeriod"] = int(max(grace, 0) * 1_000_000_000)
        spec["TaskTemplate"]["ForceUpdate"] = int(spec["TaskTemplate"].get("ForceUpdate", 0)) + 1
        version = service["Version"]["Index"]
        try:
            await self._short(
                lambda: self._api._result(
                    self._api._post_json(
                        self._api._url("/services/{0}/update", service["ID"]),
                        data=spec,
                        params={"version": version},
                    ),
                    True,
                )
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
            await asyncio.to_thread(self._reap_blocking, node_id, [], [labels[LABEL_STAGE]])

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
        """The service's log stream, which Swarm never ends: closed here once the task is
        terminal and the node has had a moment to ship the last lines."""
        holder: dict[str, Any] = {}

        def stream() -> Iterator[bytes]:
            api = self._long_api
            response = api._get(
                api._url("/services/{0}/logs", name),
                params={"follow": 1, "stdout": 1, "stderr": 1},
                stream=True,
            )
            api._raise_for_status(response)
            raw = api._get_raw_response_socket(response)
            holder["sock"], holder["response"] = getattr(raw, "_sock", raw), response
            # Read through the response: it undoes the chunked encoding, then the frames.
            return _payloads(api._multiplexed_response_stream_helper(response), holder)

        async def closer() -> None:
            await self.wait(name)
            await asyncio.sleep(LOG_TAIL_SECONDS)
            holder["closed"] = True
            sock = holder.get("sock")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        closing = asyncio.ensure_future(closer())
        try:
            async for batch in pumped(stream, lambda pump: self._long(pump, f"follow-{name}")):
                yield batch
        finally:
            closing.cancel()
            # The pump's thread may be blocked reading: the socket is cut first (which
            # wakes it), and the response closed off the loop, since closing it waits for
            # that read to let go.
            holder["closed"] = True
            sock = holder.get("sock")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            response = holder.get("response")
            if response is not None:
                threading.Thread(target=_close_quietly, args=(response,), daemon=True).start()

    async def logs_to_file(self, name: str, path: Path, *, limit: int, append: bool) -> int:
        def copy() -> int:
            chunks: Any = self._long_api.service_logs(name, stdout=True, stderr=True, follow=False)
            try:
                return write_capped(chunks, path, limit=limit, append=append)
            finally:
                with contextlib.suppress(Exception):
                    chunks.close()

        try:
            return await self._long(copy, f"logs-{name}")
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
        METER_SECONDS (read only, no network) and says it in its log, which is read here.
        Started with the fetch; after a restart, read again from the algorithm's start."""
        job_id = spec.labels[LABEL_JOB]
        name = f"lc-{placement.instance}-{job_id}-meter"
        if start:
            meter = ContainerSpec(
                name=name,
                image=placement.helper_image,
                entrypoint=["python3", "-c", METER],
                command=[f"/data/{a}" for a in DATA_AREAS],
                labels={**spec.labels, LABEL_STAGE: "meter"},
                mounts=tuple(Mount(Path(), f"/data/{a}", True, a) for a in DATA_AREAS),
                node=spec.node,
                network=Network.NONE,
                user=spec.user,
                nano_cpus=100_000_000,
                memory_bytes=64 * 1024**2,
                pids_limit=spec.pids_limit,
                log_max_bytes=1024 * 1024,
            )
            network = services.network_for(meter, placement)
            if network is not None:
                await self._ensure_job_network(network, meter)
            if await self._service(name) is None:
                body = services.service_body(meter, placement, network=network, token="")
                await self._short(
                    lambda: self._api._result(
                        self._api._post_json(self._api._url("/services/create"), data=body), True
                    )
                )
        if job_id not in self._meters and (start or await self._service(name) is not None):
            self._meters[job_id] = asyncio.ensure_future(self._read_meter(job_id, name))

    async def _read_meter(self, job_id: str, name: str) -> None:
        with contextlib.suppress(Exception):  # the meter goes with the job's reap
            async for batch in self.follow_logs(name):
                lines = [w for w in batch.split() if w.isdigit()]
                if lines:
                    self._usage[job_id] = int(lines[-1])

    async def _ensure_job_network(self, network: str, spec: ContainerSpec) -> None:
        """The job's internal overlay, made once: the meter and the algorithm made ahead
        both want it, at once, while the fetch runs."""
        labels = {
            LABEL_INSTANCE: spec.labels.get(LABEL_INSTANCE, ""),
            LABEL_JOB: spec.labels.get(LABEL_JOB, ""),
        }
        async with self._network_locks.setdefault(network, asyncio.Lock()):
            found = await self._short(lambda: self._api.networks(names=[network]))
            if any(n.get("Name") == network for n in found):
                return
            await self._short(
                lambda: self._api.create_network(
                    network, driver="overlay", internal=True, labels=labels
                )
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

        def reap() -> None:
            try:
                # A job resumed after a restart may not have said where it ran: then its
                # services say, or (they are gone) every node is reaped of it.
                where = [job.node_id] if job is not None else self._job_nodes(job_id)
                for node_id in where:
                    self._reap_blocking(node_id, [job_id], [])
            except Exception as e:
                log.warning("swarm: job %s: its reap failed (the sweep retries): %s", job_id, e)
                return
            then()

        self._reaper.submit(reap)

    async def close(self) -> None:
        # The reaps under way finish first: they need the manager's API.
        await asyncio.to_thread(self._reaper.shutdown, wait=True)
        self._reaper = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="swarm-reap")
        await super().close()

    def _job_nodes(self, job_id: str) -> list[str]:
        """The nodes a job's services were placed on; every eligible one when none is left."""
        if self._api is None:
            return []
        found = self._api.services(filters={"label": f"{LABEL_JOB}={job_id}"})
        placed = {services.service_node(s) for s in found} - {""}
        return sorted(placed) or list(self._nodes)

    def _reap_blocking(self, node_id: str, jobs: list[str], stages: list[str]) -> None:
        if self._api is None:
            return
        api = self._api
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
        nodes.run_reap(
            api,
            node_id=node_id,
            helper_image=self._settings.docker.helper_image,
            node_socket=(
                self._nodes[node_id].socket(self._runtime.node_socket)
                if node_id in self._nodes
                else self._runtime.node_socket
            ),
            jobs=jobs,
            stages=stages,
            timeout=REAP_TIMEOUT,
        )
        for job_id in jobs:
            for network in api.networks(filters={"label": f"{LABEL_JOB}={job_id}"}):
                nodes.remove_network(api, network["Id"])

    # -- the manager's answers ----------------------------------------------------

    async def _service(self, name: str) -> dict[str, Any] | None:
        try:
            info: Any = await self._short(lambda: self._api.inspect_service(name))
            return dict(info)
        except ContainerError as e:
            if e.details.get("status") == 404:
                return None
            raise

    async def _task(self, name: str) -> dict[str, Any] | None:
        own: list[dict[str, Any]] = await self._short(
            lambda: self._api.tasks(filters={"service": name})
        )
        known = self._tasks.get(name)
        for task in own:
            if task.get("ID") == known:
                return dict(task)
        return services.original_task(own)

    async def _node_down(self, node_id: str) -> str:
        """Why the node is gone, in words naming it; "" while it is up (or the task has
        no node yet)."""
        if not node_id:
            return ""
        try:
            node = await self._short(lambda: self._api.inspect_node(node_id))
        except ContainerError:
            return ""
        state = str((node.get("Status") or {}).get("State", ""))
        if state in ("down", "disconnected"):
            host = (node.get("Description") or {}).get("Hostname", "")
            return f"node {host} ({node_id}) went {state} while the job ran there"
        return ""


def _close_quietly(response: Any) -> None:
    with contextlib.suppress(Exception):
        response.close()


def _payloads(chunks: Iterator[bytes], holder: dict[str, Any]) -> Iterator[bytes]:
    """The log stream's payloads; a read cut by the closer ends it."""
    try:
        yield from chunks
    except Exception:  # an OSError or urllib3's "connection broken", as the cut falls
        if not holder.get("closed"):
            raise
