"""A trivial job's latency on the swarm lab against the local engine, in one run.

Alternates, N times each: a trivial job through a server with `[runtime] kind = "swarm"`
(placed on the lab's node B), the same job through an engine on this host's Docker
engine, and the two floors: three bare replicated-job services one after another on B
(create, wait for the task to complete, remove) and three bare containers on this host
(create, start, wait, remove). Prints the medians, the swarm/local ratio (the goal is at
most 1.5), each runtime's ratio to its floor, and where each job's time went by stage.

Needs the lab: `scripts/swarm-lab up` (and `scripts/run setup` before it).

    .venv/bin/python bench/swarm_latency.py [-n 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import docker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localcompute import Engine, Job, JobSpec
from tests.conftest import make_settings
from tests.docker.conftest import raw_job, wait_final
from tests.swarm.conftest import Lab, lab_from_env, swarm_server

BUSYBOX = "localcompute/busybox:latest"
SCRIPT = "echo trivial > $OUTPUTS/out.txt"
STAGES = (
    ("queue", "date_created", "fetch_started_at"),
    ("fetch", "fetch_started_at", "fetch_finished_at"),
    ("to algorithm", "fetch_finished_at", "algorithm_started_at"),
    ("algorithm", "algorithm_started_at", "algorithm_finished_at"),
    ("to filter", "algorithm_finished_at", "filter_started_at"),
    ("filter", "filter_started_at", "filter_finished_at"),
    ("publish", "filter_finished_at", "date_finished"),
)


async def one_job(engine: Engine, spec: JobSpec) -> tuple[float, Job]:
    start = time.perf_counter()
    job_id = await engine.submit(spec)
    job = await wait_final(engine, job_id, timeout=120)
    assert int(job.status) == 70, job
    return time.perf_counter() - start, job


def swarm_floor(lab: Lab) -> float:
    """Three bare replicated-job services on B, one after another."""
    api: Any = docker.APIClient(base_url=lab.manager, version="auto")
    start = time.perf_counter()
    for _ in range(3):
        name = f"lc-bench-{uuid.uuid4().hex[:8]}"
        body = {
            "Name": name,
            "Labels": {"localcompute.stage": "bench"},
            "TaskTemplate": {
                "ContainerSpec": {"Image": BUSYBOX, "Command": ["true"]},
                "RestartPolicy": {"Condition": "none"},
                "Placement": {"Constraints": [f"node.id=={lab.worker_node}"]},
            },
            "Mode": {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}},
        }
        api._result(api._post_json(api._url("/services/create"), data=body), True)
        while True:
            tasks = api.tasks(filters={"service": name})
            if tasks and tasks[0]["Status"]["State"] in ("complete", "failed", "rejected"):
                break
            time.sleep(0.05)
        api.remove_service(name)
    took = time.perf_counter() - start
    api.close()
    # Swarm leaves a replicated-job's containers on the node: gone, as the runtime's reap does.
    worker: Any = docker.APIClient(base_url=lab.worker, version="auto")
    for c in worker.containers(all=True, filters={"label": "localcompute.stage=bench"}):
        worker.remove_container(c["Id"], force=True)
    worker.close()
    return took


def local_floor() -> float:
    api: Any = docker.APIClient(version="auto")
    start = time.perf_counter()
    for _ in range(3):
        c = api.create_container(BUSYBOX, ["true"], host_config=api.create_host_config())
        api.start(c)
        api.wait(c)
        api.remove_container(c)
    took = time.perf_counter() - start
    api.close()
    return took


def stage_costs(jobs: list[Job]) -> dict[str, float]:
    costs: dict[str, float] = {}
    for name, begin, end in STAGES:
        spans = [
            float(getattr(j, end)) - float(getattr(j, begin))
            for j in jobs
            if getattr(j, begin) is not None and getattr(j, end) is not None
        ]
        costs[name] = statistics.median(spans) if spans else float("nan")
    return costs


async def main(n: int) -> None:
    lab = lab_from_env()
    spec = raw_job(SCRIPT, image=BUSYBOX)
    times: dict[str, list[float]] = {"swarm": [], "local": [], "swarm floor": [], "local floor": []}
    done: dict[str, list[Job]] = {"swarm": [], "local": []}
    with tempfile.TemporaryDirectory(prefix="lc-bench-swarm-") as tmp:
        root = Path(tmp) / "swarm"
        root.mkdir()
        local = Engine(make_settings(Path(tmp) / "local"))
        await local.start()
        try:
            async with swarm_server(lab, root) as server:
                for engine in (server.engine, local):
                    await one_job(engine, spec)  # warm: images, first connections
                for _ in range(n):
                    for engine, name in ((server.engine, "swarm"), (local, "local")):
                        took, job = await one_job(engine, spec)
                        times[name].append(took)
                        done[name].append(job)
                    times["swarm floor"].append(await asyncio.to_thread(swarm_floor, lab))
                    times["local floor"].append(await asyncio.to_thread(local_floor))
        finally:
            await local.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"trivial job, median of {n}, alternating in one run:")
    for key, value in med.items():
        print(f"  {key:12s} {value:6.2f} s")
    print(f"swarm / local: {med['swarm'] / med['local']:.2f} (goal <= 1.5)")
    print(f"swarm / its floor (3 bare services on B): {med['swarm'] / med['swarm floor']:.2f}")
    print(f"local / its floor (3 bare containers): {med['local'] / med['local floor']:.2f}")
    print(f"swarm floor / local floor: {med['swarm floor'] / med['local floor']:.2f}")
    costs = {name: stage_costs(jobs) for name, jobs in done.items()}
    print("per stage (median s):   " + "  ".join(f"{s:>12s}" for s, _, _ in STAGES))
    for name, cost in costs.items():
        print(f"  {name:20s} " + "  ".join(f"{cost[s]:12.3f}" for s, _, _ in STAGES))


def parse(argv: list[str] | None = None) -> Any:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10, help="jobs per runtime (default 10)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse().n))
