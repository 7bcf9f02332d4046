"""How much the engine adds to the Docker calls a job cannot avoid.

Runs N trivial jobs one after another through the engine, and the same three
containers bare (docker-py create, start, wait, remove: fetch, algorithm,
filter), alternating the two in one run, and prints the median end-to-end
latency of each and their ratio. The floor is the bare chain; the goal is a
ratio of at most 1.3. With several --disk-quota mechanisms, one engine each, all
alternating in the same run: what each way of limiting a job's disk costs.

    .venv/bin/python bench/job_overhead.py [-n 15] [--disk-quota loop --disk-quota watch]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import docker

from localcompute import AlgorithmSpec, Engine, JobSpec, JobStatus
from localcompute.core.settings import (
    DockerSettings,
    EnvironmentSettings,
    PoolSettings,
    ServerSettings,
    Settings,
)

BUSYBOX = "localcompute/busybox"
HELPER = "localcompute/helper:latest"
SCRIPT = "echo trivial > $OUTPUTS/out.txt"


def bare_chain(client: docker.DockerClient, work: Path) -> float:
    """fetch → algorithm → filter as plain docker-py calls, with the same mounts."""
    data, results, meta, spec = (work / d for d in ("data", "results", "meta", "spec"))
    for d in (data, results, meta, spec):
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o777)
    (spec / "fetch.json").write_text(
        json.dumps(
            {
                "inputs": [],
                "algorithm": {
                    "did": "",
                    "folder": "",
                    "rawcode": SCRIPT,
                    "url": None,
                    "path": None,
                    "ddo": None,
                },
                "algocustomdata": None,
                "has_algocustomdata": False,
                "connect_timeout": 30,
                "idle_timeout": 120,
            }
        )
    )
    steps = [
        (
            HELPER,
            ["python3", "/opt/localcompute/helper/fetch.py", "/job/fetch.json"],
            {str(spec): {"bind": "/job", "mode": "ro"}, str(data): {"bind": "/data", "mode": "rw"}},
        ),
        (
            f"{BUSYBOX}:latest",
            ["sh", "-c", "sh /data/transformations/algorithm"],
            {
                str(data / "inputs"): {"bind": "/data/inputs", "mode": "ro"},
                str(data / "transformations"): {"bind": "/data/transformations", "mode": "ro"},
                str(data / "outputs"): {"bind": "/data/outputs", "mode": "rw"},
            },
        ),
        (
            HELPER,
            [
                "python3",
                "/opt/localcompute/helper/filter.py",
                "--outputs",
                "/data/outputs",
                "--results",
                "/results",
                "--manifest",
                "/meta/filter.json",
            ],
            {
                str(data / "outputs"): {"bind": "/data/outputs", "mode": "ro"},
                str(results): {"bind": "/results", "mode": "rw"},
                str(meta): {"bind": "/meta", "mode": "rw"},
            },
        ),
    ]
    start = time.perf_counter()
    for image, command, volumes in steps:
        container = client.containers.create(
            image,
            command,
            volumes=volumes,
            network_mode="none",
            user="1000:1000",
            environment={"OUTPUTS": "/data/outputs"},
        )
        container.start()
        container.wait()
        container.remove()
    return time.perf_counter() - start


async def engine_job(engine: Engine) -> float:
    spec = JobSpec(
        environment="bench",
        algorithm=AlgorithmSpec(image=BUSYBOX, entrypoint="sh $ALGO", rawcode=SCRIPT),
    )
    start = time.perf_counter()
    job_id = await engine.submit(spec)
    job = await engine.wait(job_id)
    elapsed = time.perf_counter() - start
    assert job.status == JobStatus.JOB_COMPLETED, job.status_text
    return elapsed


async def main(n: int, quotas: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engines: dict[str, Engine] = {}
        for quota in quotas:
            engine = Engine(
                Settings(
                    server=ServerSettings(data_dir=Path(tmp) / f"var-{quota}"),
                    docker=DockerSettings(pull_policy="never", fetch_network="host"),
                    environments=[EnvironmentSettings(id="bench", max_jobs=1)],
                    pool=PoolSettings.model_validate({"disk_quota": quota}),
                )
            )
            await engine.start()
            engines[engine.disk.mechanism if quota == "auto" else quota] = engine
        client = docker.from_env()
        engine_times: dict[str, list[float]] = {name: [] for name in engines}
        bare_times: list[float] = []
        try:
            for engine in engines.values():
                await engine_job(engine)  # warm-up: page cache, image layers
            await asyncio.to_thread(bare_chain, client, Path(tmp) / "warm")
            for i in range(n):
                for name, engine in engines.items():
                    engine_times[name].append(await engine_job(engine))
                bare_times.append(await asyncio.to_thread(bare_chain, client, Path(tmp) / f"b{i}"))
        finally:
            client.close()
            for engine in engines.values():
                await engine.close()
    b = statistics.median(bare_times)
    print(f"jobs: {n} of each, alternating")
    print(f"bare docker-py, same 3 containers: median {b * 1000:.0f} ms")
    for name, times in engine_times.items():
        e = statistics.median(times)
        print(
            f"engine, disk quota {name}, end to end (submit → 70): median {e * 1000:.0f} ms; "
            f"ratio engine / bare: {e / b:.2f} (goal ≤ 1.3)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=15, help="jobs of each kind")
    parser.add_argument(
        "--disk-quota",
        action="append",
        choices=["auto", "xfs", "loop", "watch"],
        help="an engine with this disk quota (repeatable; default: auto)",
    )
    args = parser.parse_args()
    asyncio.run(main(args.n, args.disk_quota or ["auto"]))
