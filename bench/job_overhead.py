"""How much the engine adds to the Docker calls a job cannot avoid.

Runs N trivial jobs (raw code, one small local input, one small output) one after
another through the engine (its fetch and filter as processes of the host; the filter
alone in its container; and, as before, both in their containers), and beside them, all
alternating in one run, the floors:
the same three containers bare (create, start, wait, remove: fetch, algorithm,
filter) through docker-py's high-level API and the low-level one, and the physical
floor, three lifecycles of a container that does nothing (`busybox true`, low-level
API). Prints the median end-to-end latency of each, the engine's ratio to each floor
(the goal is at most 1.00 of the physical one), and where the engine's time went.
With several --disk-quota mechanisms, one engine each, all
alternating in the same run: what each way of limiting a job's disk costs. With
--http, also through the HTTP API, black-box: a `localcompute serve` process, the
job started in Ocean Node's dialect (signed) and its status polled every 20 ms, as
a client sees it.

    .venv/bin/python bench/job_overhead.py [-n 15] [--http] [--disk-quota loop --disk-quota watch]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import bare_lifecycle, verdict
from localcompute import AlgorithmSpec, Engine, FileSource, InputSpec, Job, JobSpec, JobStatus
from localcompute.client import Client, Key
from localcompute.core.settings import (
    DockerSettings,
    EnvironmentSettings,
    PoolSettings,
    ServerSettings,
    Settings,
)

BUSYBOX = "localcompute/busybox"
HELPER = "localcompute/helper:latest"
SCRIPT = "cat /data/inputs/*/0 > $OUTPUTS/out.txt"
DID = "did:op:" + "ab" * 32


def _chain_steps(work: Path) -> list[tuple[str, list[str], dict[str, dict[str, str]]]]:
    """The same three containers a trivial job runs (fetch, algorithm, filter), with
    the same mounts, over a job folder laid out as the engine lays it out."""
    data, results, meta, spec = (work / d for d in ("data", "results", "meta", "spec"))
    for d in (data, results, meta, spec, data / "outputs"):
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
    return [
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


def physical_floor(api: docker.APIClient) -> float:
    """Three lifecycles of a container that does nothing: what Docker itself needs for
    three steps, strictly one after another."""
    return sum(bare_lifecycle(api, f"{BUSYBOX}:latest") for _ in range(3))


def bare_chain(client: docker.DockerClient, work: Path) -> float:
    """The high-level floor: docker-py's Container API (its create inspects the new
    container once more), strictly one container after another."""
    steps = _chain_steps(work)
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


def lean_chain(api: docker.APIClient, work: Path) -> float:
    """The low-level floor: the same containers through the engine API itself, each
    create, start, wait and remove one request, strictly one after another."""
    steps = _chain_steps(work)
    start = time.perf_counter()
    for image, command, volumes in steps:
        created = api.create_container(
            image,
            command,
            user="1000:1000",
            environment={"OUTPUTS": "/data/outputs"},
            host_config=api.create_host_config(
                binds={k: v for k, v in volumes.items()}, network_mode="none"
            ),
        )
        api.start(created["Id"])
        api.wait(created["Id"])
        api.remove_container(created["Id"])
    return time.perf_counter() - start


# Where a job's time goes, from the timestamps it records: (name, from, to).
PHASES = (
    ("admit", "date_created", "fetch_started_at"),
    ("fetch", "fetch_started_at", "fetch_finished_at"),
    ("to algorithm", "fetch_finished_at", "algorithm_started_at"),
    ("algorithm", "algorithm_started_at", "algorithm_finished_at"),
    ("to filter", "algorithm_finished_at", "filter_started_at"),
    ("filter", "filter_started_at", "filter_finished_at"),
    ("publish", "publish_started_at", "date_finished"),
)


async def engine_job(engine: Engine, data: Path) -> tuple[float, Job]:
    spec = JobSpec(
        environment="bench",
        inputs=[InputSpec(did=DID, files=[FileSource(path=str(data))])],
        algorithm=AlgorithmSpec(image=BUSYBOX, entrypoint="sh $ALGO", rawcode=SCRIPT),
    )
    start = time.perf_counter()
    job_id = await engine.submit(spec)
    job = await engine.wait(job_id)
    elapsed = time.perf_counter() - start
    assert job.status == JobStatus.JOB_COMPLETED, job.status_text
    return elapsed, job


@contextlib.contextmanager
def served(work: Path) -> Iterator[str]:
    """A `localcompute serve` process of its own, as a user starts it; its URL."""
    work.mkdir(parents=True)
    (work / "data.csv").write_text("a,b\n1,2\n")
    config = work / "bench.toml"
    config.write_text(
        '[server]\nport = 0\ndata_dir = "var"\n'
        '[docker]\npull_policy = "never"\nfetch_network = "host"\n'
        '[[environments]]\nid = "bench"\nmax_jobs = 1\n'
        f'[provider]\ndataset_roots = ["{work}"]\n'
        f'[[datasets]]\ndid = "{DID}"\nfiles = ["{work / "data.csv"}"]\n'
        "[limits]\nexempt_loopback = true\n"  # it polls from this host as fast as it can
    )
    command = [sys.executable, "-m", "localcompute", "serve", "--config", str(config)]
    server = subprocess.Popen(
        [*command, "--log-level", "warning"], stdout=subprocess.PIPE, text=True, cwd=work
    )
    try:
        assert server.stdout is not None
        yield server.stdout.readline().split()[-1]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)


async def http_job(client: Client) -> float:
    """Submit to 70 as a client sees it: a signed start, then wait() (the event stream
    where the server has one, else its status every 20 ms)."""
    start = time.perf_counter()
    job = await client.start(
        [DID], rawcode=SCRIPT, image=BUSYBOX, entrypoint="sh $ALGO", environment="bench"
    )
    done = await client.wait(job.job_id, poll=0.02)
    elapsed = time.perf_counter() - start
    assert done.status == JobStatus.JOB_COMPLETED, done.status_text
    return elapsed


def phase_line(jobs: list[Job]) -> str:
    parts = []
    for name, begin, end in PHASES:
        spans = [
            getattr(j, end) - getattr(j, begin)
            for j in jobs
            if getattr(j, begin) is not None and getattr(j, end) is not None
        ]
        if spans:
            parts.append(f"{name} {statistics.median(spans) * 1000:.0f}")
    return ", ".join(parts) + " (ms, medians)"


async def main(n: int, quotas: list[str], http: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with contextlib.AsyncExitStack() as stack:
            node = None
            if http:
                url = stack.enter_context(served(Path(tmp) / "http"))
                node = await stack.enter_async_context(Client(url, Key.random()))
            await measure(Path(tmp), n, quotas, node, stack)


async def measure(
    tmp: Path, n: int, quotas: list[str], node: Client | None, stack: contextlib.AsyncExitStack
) -> None:
    data = tmp / "data.csv"
    data.write_text("a,b\n1,2\n")
    engines: dict[str, Engine] = {}
    # Each quota's engine three times: the fetch and the filter on the host, as now; the
    # fetch alone (host_filter = false); and both in their containers, as before: the
    # phases of each side by side.
    ways = {
        (True, True): "",
        (True, False): ", filter in its container",
        (False, False): ", fetch and filter in their containers (before)",
    }
    for quota, (host_fetch, host_filter) in [(q, way) for q in quotas for way in ways]:
        engine = Engine(
            Settings(
                server=ServerSettings(data_dir=tmp / f"var-{quota}-{host_fetch}-{host_filter}"),
                docker=DockerSettings(
                    pull_policy="never",
                    fetch_network="host",
                    host_fetch=host_fetch,
                    host_filter=host_filter,
                ),
                environments=[EnvironmentSettings(id="bench", max_jobs=1)],
                pool=PoolSettings.model_validate({"disk_quota": quota}),
                provider={"dataset_roots": [str(tmp)]},
            )
        )
        await engine.start()
        stack.push_async_callback(engine.close)
        name = engine.disk.mechanism if quota == "auto" else quota
        engines[name + ways[host_fetch, host_filter]] = engine
    client = docker.from_env()
    stack.callback(client.close)
    api = docker.APIClient(version="auto")
    stack.callback(api.close)
    engine_times: dict[str, list[float]] = {name: [] for name in engines}
    engine_jobs: dict[str, list[Job]] = {name: [] for name in engines}
    http_times: list[float] = []
    bare_times: list[float] = []
    lean_times: list[float] = []
    true_times: list[float] = []
    for engine in engines.values():
        await engine_job(engine, data)  # warm-up: page cache, image layers
    if node is not None:
        await http_job(node)
    await asyncio.to_thread(bare_chain, client, tmp / "warm")
    await asyncio.to_thread(lean_chain, api, tmp / "warm-lean")
    await asyncio.to_thread(physical_floor, api)
    for i in range(n):
        for name, engine in engines.items():
            elapsed, job = await engine_job(engine, data)
            engine_times[name].append(elapsed)
            engine_jobs[name].append(job)
        if node is not None:
            http_times.append(await http_job(node))
        bare_times.append(await asyncio.to_thread(bare_chain, client, tmp / f"b{i}"))
        lean_times.append(await asyncio.to_thread(lean_chain, api, tmp / f"l{i}"))
        true_times.append(await asyncio.to_thread(physical_floor, api))
    b, lean = statistics.median(bare_times), statistics.median(lean_times)
    physical = statistics.median(true_times)
    floor = min(b, lean)
    print(f"jobs: {n} of each, alternating")
    print(f"physical floor, three lifecycles of busybox true:  median {physical * 1000:.0f} ms")
    print(f"floor, docker-py high-level API (create inspects): median {b * 1000:.0f} ms")
    print(f"floor, low-level API (one request per call):       median {lean * 1000:.0f} ms")
    for name, times in engine_times.items():
        e = statistics.median(times)
        print(
            f"engine, disk quota {name}, end to end (submit → 70): median {e * 1000:.0f} ms; "
            f"ratio to the faster floor: {e / floor:.2f} (to the high-level one: {e / b:.2f}); "
            f"≤ 1.00: {verdict(e / floor <= 1.0)}"
        )
        print(
            f"  ratio to the physical floor: {e / physical:.2f}; "
            f"≤ 1.00: {verdict(e / physical <= 1.0)}"
        )
        print(f"  phases: {phase_line(engine_jobs[name])}")
    if http_times:
        h = statistics.median(http_times)
        print(
            f"HTTP, a served process, signed start + wait() on its event stream: median "
            f"{h * 1000:.0f} ms; ratio to the faster floor: {h / floor:.2f}; "
            f"to the physical floor: {h / physical:.2f}; "
            f"≤ 1.00 of the physical floor (the goal): {verdict(h / physical <= 1.0)}"
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
    parser.add_argument(
        "--http", action="store_true", help="also through the HTTP API of a served process"
    )
    args = parser.parse_args()
    asyncio.run(main(args.n, args.disk_quota or ["auto"], args.http))
