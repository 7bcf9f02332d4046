"""Servers on the two-node swarm lab (scripts/swarm-lab), and the check that a test left
nothing on either node. The lab must be up: `scripts/run test` starts it, and without it
this layer fails (never skips)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from localcompute import Engine
from localcompute.core.config_file import load_settings
from localcompute.web.app import create_app
from localcompute.web.context import ENGINE
from tests.conftest import STARTED_INSTANCES
from tests.served import free_port, serve_in_a_thread, write_config

pytestmark = pytest.mark.swarm

REPO = Path(__file__).resolve().parents[2]
LAB_SCRIPT = REPO / "scripts" / "swarm-lab"
WORKER_LABEL = "localcompute.lab=worker"


@dataclass(frozen=True)
class Lab:
    manager: str  # unix://… of A, the manager, on this host
    worker: str  # unix://… of B, the worker, in its network namespace
    worker_node: str
    manager_node: str
    host_addr: str  # this host as B reaches it

    @property
    def worker_socket(self) -> str:
        return self.worker.removeprefix("unix://")

    def docker(self, node: str, *args: str) -> str:
        host = self.manager if node == "a" else self.worker
        done = subprocess.run(
            ["docker", "-H", host, *args], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def runtime_section(self, port: int, node_labels: tuple[str, ...] = (WORKER_LABEL,)) -> str:
        return f"""
[runtime]
kind = "swarm"
manager = "{self.manager}"
server_url = "http://{self.host_addr}:{port}"
node_labels = {json.dumps(list(node_labels))}
egress_network = "host"
node_socket = "{self.worker_socket}"
"""

    def left_behind(self, instance: str) -> list[str]:
        """What an instance's jobs left on either node: services, containers, volumes,
        networks (a job's, on the manager), and reap tasks' containers."""
        label = f"label=localcompute.instance={instance}"
        found = []
        found += [
            f"service {n}" for n in self.docker("a", "service", "ls", "-q", "-f", label).split()
        ]
        for node in ("a", "b"):
            found += [
                f"{node}: container {c}"
                for c in self.docker(node, "ps", "-aq", "-f", label).split()
            ]
            found += [
                f"{node}: volume {v}"
                for v in self.docker(node, "volume", "ls", "-q", "-f", label).split()
            ]
            found += [
                f"{node}: reap container {c}"
                for c in self.docker(
                    node, "ps", "-aq", "-f", "label=localcompute.stage=reap"
                ).split()
            ]
        found += [
            f"network {n}"
            for n in self.docker("a", "network", "ls", "-q", "-f", label).split()
            if self._in_the_cluster(n)
        ]
        return found

    def _in_the_cluster(self, network: str) -> bool:
        """Whether a job network the manager lists is the cluster's, not the copy a node
        that ran a task keeps: in the lab, whose engines lack iptables, a node's
        load-balancer endpoint on the network cannot be torn down, and the node lists the
        network after the cluster removed it. Only the cluster's counts as left behind
        (removing it says so: Docker answers "not found" for the node's copy)."""
        done = subprocess.run(
            ["docker", "-H", self.manager, "network", "rm", network],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return "not found" not in done.stderr


@pytest.fixture(scope="session")
def lab() -> Lab:
    try:
        return lab_from_env()
    except RuntimeError as e:
        pytest.fail(str(e))


def lab_from_env() -> Lab:
    """The lab `scripts/swarm-lab env` describes; RuntimeError when it is not up."""
    done = subprocess.run([str(LAB_SCRIPT), "env"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(
            "the swarm lab is not up: `scripts/swarm-lab up` starts it (`scripts/run test` "
            f"does): {done.stderr.strip()}"
        )
    env = dict(part.split("=", 1) for part in done.stdout.split()[1:])
    return Lab(
        env["LAB_MANAGER"],
        env["LAB_WORKER"],
        env["LAB_WORKER_NODE"],
        env["LAB_MANAGER_NODE"],
        env["LAB_HOST_ADDR"],
    )


@dataclass
class SwarmServer:
    base_url: str
    engine: Engine
    root: Path
    files_url: str
    extra: dict[str, Any]  # as Served's: the file server, for operator_client.localised


@asynccontextmanager
async def swarm_server(
    lab: Lab, root: Path, extra: str = "", node_labels: tuple[str, ...] = (WORKER_LABEL,)
) -> AsyncIterator[SwarmServer]:
    """The server with `[runtime] kind = "swarm"`, in this process on a real port of the
    address node B reaches; at the end, nothing of it may be left on either node."""
    import http.server

    from tests.served import _Files

    files = http.server.ThreadingHTTPServer((lab.host_addr, 0), _Files)
    serve_in_a_thread(files)
    port = free_port()
    files_url = f"http://{lab.host_addr}:{files.server_port}/data.csv"
    config = write_config(
        root,
        port,
        files_url,
        host=lab.host_addr,
        extra=lab.runtime_section(port, node_labels) + extra,
    )
    instance = ""
    try:
        async with serve_app(config, lab.host_addr, port) as engine:
            instance = engine.instance
            base = f"http://{lab.host_addr}:{port}"
            yield SwarmServer(base, engine, root, files_url, {"files": files})
    finally:
        files.shutdown()
        files.server_close()
    assert lab.left_behind(instance) == []


@asynccontextmanager
async def serve_app(config: Path, host: str, port: int) -> AsyncIterator[Engine]:
    """The app of `config`, served in this process on host:port; its engine."""
    app = create_app(load_settings(config))
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        STARTED_INSTANCES.add(app[ENGINE].instance)
        yield app[ENGINE]
    finally:
        await runner.cleanup()


@pytest.fixture
def swarm_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "swarm"
    root.mkdir()
    yield root


def job_summary(job: Any, sha_of: dict[str, str]) -> dict[str, Any]:
    return {
        "status": int(job.status),
        "reason": str(job.termination_reason),
        "exit": job.exit_code,
        "results": [(r.filename, r.type) for r in job.results],
        "sha256": sha_of,
    }


def dump(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True, default=str)
