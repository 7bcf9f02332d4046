"""Jobs on the two-node swarm lab: placed on node B, and ending as on the local engine.

The same job specs run on the local runtime and on the swarm must give the same
statuses, reasons, result names and sha256s. Every test ends with nothing of its server
left on either node (the swarm_server context checks)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from localcompute import (
    Engine,
    FileSource,
    InputSpec,
    JobSpec,
    JobStatus,
    TerminationReason,
)
from localcompute.core.receipt import read_receipt
from tests.conftest import make_settings
from tests.docker.conftest import raw_job, receipt_problem, wait_final, wait_status
from tests.node_client import NodeClient, raw_algorithm
from tests.operator_client import DOCUMENT_EXAMPLE, OPERATOR_CONFIG, Provider, localised
from tests.served import LOCAL_DID, Consumer, free_port, start_server, stop_server
from tests.swarm.conftest import REPO, Lab, dump, job_summary, serve_app, swarm_server

pytestmark = pytest.mark.swarm

D1 = "did:op:" + "a1" * 32
D2 = "did:op:" + "b2" * 32
BUSYBOX = "localcompute/busybox:latest"

# What every spec's algorithm does with its inputs: copies, its own log, output lines.
COPY_AND_LOG = (
    "cat /data/inputs/*/0 > $OUTPUTS/copy.txt; ls /data/inputs > $OUTPUTS/dirs.txt; "
    "echo own > $LOGS/algorithm.log; echo line one; sleep 0.5; echo line two >&2"
)


def specs(files_url: str, local_file: Path) -> dict[str, JobSpec]:
    inputs = [
        InputSpec(did=D1, files=[FileSource(url=files_url)]),
        InputSpec(did=D2, files=[FileSource(path=str(local_file))]),
    ]
    return {
        "inputs": raw_job(COPY_AND_LOG, inputs=inputs, image=BUSYBOX),
        "exit": raw_job("echo failing; exit 3", image=BUSYBOX),
        "timeout": raw_job("echo slow; sleep 30", image=BUSYBOX).model_copy(
            update={"max_duration": 2}
        ),
        "stop": raw_job("echo stop me; sleep 30", image=BUSYBOX),
        # The hardened profile's read-only root and /tmp in memory, on both alike.
        "walls": raw_job(
            "touch /x 2> $OUTPUTS/root.txt; echo tmp > /tmp/t && cat /tmp/t > $OUTPUTS/tmp.txt",
            image=BUSYBOX,
        ),
    }


async def run_spec(engine: Engine, name: str, spec: JobSpec) -> dict[str, object]:
    job_id = await engine.submit(spec)
    live = b""
    if name in ("stop", "inputs"):
        await wait_status(engine, job_id, JobStatus.RUNNING_ALGORITHM, timeout=60)
        if name == "stop":
            await asyncio.sleep(1)
            await engine.stop(job_id)
        else:
            log = engine.live_log(job_id)
            assert log is not None
            async for chunk in log.follow():
                live += chunk
    job = await wait_final(engine, job_id, timeout=90)
    sha = {}
    for index, result in enumerate(job.results):
        if result.type in ("output", "algorithmLog"):
            data = await asyncio.to_thread(engine.result_path(job, index).read_bytes)
            sha[result.filename] = hashlib.sha256(data).hexdigest()
    summary = job_summary(job, sha)
    # Its receipt holds on either runtime, and names the same files by the same digests
    # (the image ids differ: each engine imported its own copy).
    assert receipt_problem(engine, job) == ""
    receipt = read_receipt(engine.result_path(job, len(job.results) - 1).read_bytes())
    summary["receipt"] = {
        "outputs": [(s.name, s.sha256) for s in receipt.outputs],
        "read": [
            d["digest"]["sha256"] for k in ("algorithm", "input") for d in receipt.dependencies(k)
        ],
        "images": len(receipt.dependencies("image")),
    }
    if name == "inputs":
        summary["live"] = live.decode()
    return summary


async def test_the_same_jobs_end_alike_on_the_swarm_and_the_local_engine(
    lab: Lab, swarm_root: Path, data_dir: Path
) -> None:
    local_file = swarm_root / "local-input.csv"
    local_file.write_text("a dataset owner's local file\n")
    async with swarm_server(lab, swarm_root) as server:
        jobs = specs(server.files_url, local_file)
        swarm = {name: await run_spec(server.engine, name, spec) for name, spec in jobs.items()}
        # The same, on this host's engine (the URL input from the same file server).
        local_engine = Engine(make_settings(data_dir))
        await local_engine.start()
        try:
            local = {name: await run_spec(local_engine, name, spec) for name, spec in jobs.items()}
        finally:
            await local_engine.close()
    assert swarm == local, dump({"swarm": swarm, "local": local})
    # What the specs must show, whichever runtime ran them.
    assert swarm["inputs"]["status"] == 70 and swarm["inputs"]["reason"] == "completed"
    assert "line one\n" in str(swarm["inputs"]["live"])
    assert (swarm["exit"]["reason"], swarm["exit"]["exit"]) == ("failed", 3)
    assert swarm["timeout"]["reason"] == "timeout"
    assert swarm["stop"]["reason"] == "stopped"
    refused = hashlib.sha256(b"touch: /x: Read-only file system\n").hexdigest()
    walls = swarm["walls"]["sha256"]
    assert isinstance(walls, dict)
    assert walls["root.txt"] == refused
    assert walls["tmp.txt"] == hashlib.sha256(b"tmp\n").hexdigest()


async def test_a_job_of_each_dialect_runs_on_node_b_and_none_on_a(
    lab: Lab, swarm_root: Path
) -> None:
    async with (
        swarm_server(lab, swarm_root, OPERATOR_CONFIG) as server,
        aiohttp.ClientSession() as session,
    ):
        instance = server.engine.instance
        label = f"label=localcompute.instance={instance}"
        async with session.get(f"{server.base_url}/api/services/computeEnvironments") as r:
            by_chain = await r.json()
        [test_env] = [e for e in by_chain["8996"] if e["id"] == "test"]
        # A job's disk on a node is its volumes there: soft, and said so.
        assert test_env["diskQuota"] == {"mechanism": "volumes", "hard": False}
        assert "measured on the node every half second" in test_env["desc"]
        consumer = Consumer(session, server.base_url)
        code, answer = await consumer.start(
            raw_algorithm("sleep 1; cat /data/inputs/*/0 > $OUTPUTS/copy.txt")
        )
        assert code == 200, answer
        provider_job = answer[0]["jobId"]
        node = NodeClient(session, server.base_url)
        code, answer = await node.start(
            raw_algorithm("sleep 1; echo node > $OUTPUTS/node.txt"), [{"documentId": LOCAL_DID}]
        )
        assert code == 200, answer
        node_job = answer[0]["jobId"]
        provider = Provider(session, server.base_url)
        code, answer = await provider.create(
            localised(
                DOCUMENT_EXAMPLE,
                server,
                algorithm={
                    "rawcode": "sleep 1; cat /data/inputs/*/0 > $OUTPUTS/op.txt",
                    "container": {
                        "image": "localcompute/busybox",
                        "tag": "latest",
                        "entrypoint": "sh $ALGO",
                    },
                },
            )
        )
        assert code == 200, answer
        operator_job = answer[0]["jobId"]
        jobs = (provider_job, node_job, operator_job)
        # While they run: their containers are on B's engine, none on A's.
        seen_on_b: set[str] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(seen_on_b) < len(jobs):
            # In a thread: the server and engine under test run on this loop.
            names = (
                await asyncio.to_thread(
                    lab.docker, "b", "ps", "-a", "--format", "{{.Names}}", "-f", label
                )
            ).split()
            seen_on_b |= {j for j in jobs if any(j in n for n in names)}
            assert await asyncio.to_thread(lab.docker, "a", "ps", "-aq", "-f", label) == ""
            await asyncio.sleep(0.2)
        assert seen_on_b == set(jobs)
        done = await consumer.wait_final(provider_job)
        assert (done["status"], done["statusText"]) == (70, "Job completed"), done
        [copy] = [r for r in done["results"] if r["filename"] == "copy.txt"]
        nonce = await consumer.next_nonce()
        index = done["results"].index(copy)
        async with session.get(
            f"{server.base_url}/api/services/computeResult",
            params=consumer.result_query(provider_job, index, nonce),
        ) as r:
            body = await r.read()
        assert r.status == 200 and body == b"local dataset\n"
        node_done = await node.wait(node_job)
        assert node_done["status"] == 70, node_done
        assert "outputs.tar" in [r["filename"] for r in node_done["results"]]
        operator_done = await provider.wait_final(operator_job)
        assert operator_done["status"] == 70, operator_done
        assert "op.txt" in [r["filename"] for r in operator_done["results"]]


TWO_NODE_ENVIRONMENTS = """
[[environments]]
id = "left"
node_label = "localcompute.lab=manager"
max_job_duration = 60

[[environments]]
id = "right"
node_label = "localcompute.lab=worker"
max_job_duration = 60
"""


async def test_the_pool_spans_both_nodes_and_an_environment_naming_a_label_runs_there(
    lab: Lab, swarm_root: Path
) -> None:
    async with swarm_server(
        lab, swarm_root, TWO_NODE_ENVIRONMENTS, node_labels=("localcompute.lab",)
    ) as server:
        engine = server.engine
        label = f"label=localcompute.instance={server.engine.instance}"
        # Both nodes are in the pool, each planned on its own.
        assert sorted(n.node for n in engine.pool.nodes) == sorted(
            (lab.manager_node, lab.worker_node)
        )
        assert engine.pool.capacity.ram_bytes == sum(n.ram_bytes for n in engine.pool.nodes)
        script = "sleep 1; cat /data/inputs/*/0 > $OUTPUTS/copy.txt"
        inputs = [InputSpec(did=D1, files=[FileSource(url=server.files_url)])]
        left, right = [
            await engine.submit(raw_job(script, inputs=inputs, image=BUSYBOX, environment=e))
            for e in ("left", "right")
        ]
        seen: dict[str, set[str]] = {"a": set(), "b": set()}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (seen["a"] and seen["b"]):
            for node in ("a", "b"):
                # In a thread: a blocking `docker ps` would stall the server and engine
                # on this loop, as they serve and run the very jobs it watches.
                names = await asyncio.to_thread(
                    lab.docker, node, "ps", "-a", "--format", "{{.Names}}", "-f", label
                )
                seen[node] |= {j for j in (left, right) if j in names}
            await asyncio.sleep(0.2)
        # Each job's containers are on its environment's node, and only there.
        assert seen == {"a": {left}, "b": {right}}
        for job_id, node in ((left, lab.manager_node), (right, lab.worker_node)):
            job = await wait_final(engine, job_id, timeout=90)
            logs = {
                r.filename: engine.result_path(job, i).read_text(errors="replace")
                for i, r in enumerate(job.results)
                if r.filename.endswith(".log")
            }
            # 70 alone is any ending: it must be a success, and if not, say why.
            why = dump({"job": job.model_dump(mode="json"), "logs": logs})
            assert job.status == JobStatus.JOB_COMPLETED, why
            assert job.termination_reason == TerminationReason.COMPLETED, why
            assert job.allocation is not None and job.allocation.node == node
            copies = [i for i, r in enumerate(job.results) if r.filename == "copy.txt"]
            assert len(copies) == 1, why
            [copy] = copies
            assert engine.result_path(job, copy).read_bytes() == b"dataset behind a URL\n"


async def test_a_stage_token_opens_only_its_own_job_and_stage(lab: Lab, swarm_root: Path) -> None:
    async with swarm_server(lab, swarm_root) as server, aiohttp.ClientSession() as session:
        engine = server.engine
        job_id = await engine.submit(raw_job("sleep 2", image=BUSYBOX))
        await wait_status(engine, job_id, JobStatus.RUNNING_ALGORITHM, timeout=60)
        from localcompute.core.stagekey import StageKey

        key = StageKey.load(server.root / "var")
        base = f"{server.base_url}/api/runtime/jobs/{job_id}"

        async def get(path: str, token: str) -> int:
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(base + path, headers=headers) as r:
                return r.status

        async def put(path: str, token: str) -> int:
            headers = {"Authorization": f"Bearer {token}", "X-Content-Sha256": "0" * 64}
            async with session.put(base + path, data=b"x", headers=headers) as r:
                return r.status

        # Forged, another job's, the other stage's: refused; the right one, at the wrong
        # stage (the job runs its algorithm): refused too.
        assert await get("/fetch/fetch.json", "f" * 64) == 401
        assert await get("/fetch/fetch.json", key.token("another-job", "fetch")) == 401
        assert await get("/fetch/fetch.json", key.token(job_id, "filter")) == 401
        assert await get("/fetch/fetch.json", key.token(job_id, "fetch")) == 400
        assert await put("/filter/results/x", key.token(job_id, "fetch")) == 401
        assert await put("/filter/results/x", key.token(job_id, "filter")) == 400
        done = await wait_final(engine, job_id)
        assert done.status == JobStatus.JOB_COMPLETED


async def test_the_server_killed_while_the_algorithm_runs_finishes_it_at_its_next_start(
    lab: Lab, swarm_root: Path
) -> None:
    port = free_port()
    extra = lab.runtime_section(port)
    served = start_server(swarm_root, host=lab.host_addr, port=port, extra=extra)
    instance = served.instance
    async with aiohttp.ClientSession() as session:
        consumer = Consumer(session, served.base_url)
        code, answer = await consumer.start(raw_algorithm("echo ran >> $OUTPUTS/runs.txt; sleep 4"))
        assert code == 200, answer
        job_id = answer[0]["jobId"]
        deadline = time.monotonic() + 60
        while (await consumer.status(job_id))[0]["status"] != 40:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
    assert served.process is not None
    os.kill(served.process.pid, signal.SIGKILL)
    served.process.wait(timeout=10)
    stop_server(served)  # its file server
    # The next start, on the same data folder and address: the job is continued, never
    # run again.
    async with serve_app(swarm_root / "config.toml", lab.host_addr, port) as engine:
        assert engine.instance == instance
        job = await wait_final(engine, job_id, timeout=90)
        assert job.status == JobStatus.JOB_COMPLETED, job
        [runs] = [i for i, r in enumerate(job.results) if r.filename == "runs.txt"]
        assert engine.result_path(job, runs).read_text() == "ran\n"
    assert lab.left_behind(instance) == []


GPU_ENVIRONMENT = """
[[environments]]
id = "gpu"
gpus = 1
max_jobs = 1
max_job_duration = 60
"""


async def test_a_gpu_job_gets_one_of_the_nodes_gpus_named_by_swarm(
    lab: Lab, swarm_root: Path
) -> None:
    async with swarm_server(lab, swarm_root, GPU_ENVIRONMENT) as server:
        engine = server.engine
        spec = raw_job(
            'echo "$DOCKER_RESOURCE_GPU" > $OUTPUTS/gpu.txt', image=BUSYBOX, environment="gpu"
        )
        job = await wait_final(engine, await engine.submit(spec), timeout=90)
        assert job.status == JobStatus.JOB_COMPLETED, job
        [gpu] = [i for i, r in enumerate(job.results) if r.filename == "gpu.txt"]
        # The lab's node B declares two (gpu=lab-gpu-0, gpu=lab-gpu-1): the job got one.
        assert engine.result_path(job, gpu).read_text().strip() in ("lab-gpu-0", "lab-gpu-1")


SMALL_ENVIRONMENT = """
[[environments]]
id = "small"
ram_gb = 0.0625
max_jobs = 1
max_job_duration = 60
"""


async def test_past_its_memory_the_algorithm_is_killed_and_the_job_fails_with_exit_137(
    lab: Lab, swarm_root: Path
) -> None:
    async with swarm_server(lab, swarm_root, SMALL_ENVIRONMENT) as server:
        engine = server.engine
        # tail keeps the last 200 MB it read: far past the environment's 64 MiB.
        spec = raw_job("tail -c 200000000 /dev/zero", image=BUSYBOX, environment="small")
        job = await wait_final(engine, await engine.submit(spec), timeout=90)
        # Swarm cannot tell OOM from another SIGKILL: failed, with exit code 137.
        assert (job.exit_code, str(job.termination_reason)) == (137, "failed"), job.detail


SMALL_DISK = """
[[environments]]
id = "smalldisk"
disk_gb = 0.05
max_jobs = 1
max_job_duration = 60
"""


async def test_past_its_disk_the_algorithm_is_stopped_as_on_the_local_engine(
    lab: Lab, swarm_root: Path
) -> None:
    async with swarm_server(lab, swarm_root, SMALL_DISK) as server:
        engine = server.engine
        # 200 MiB, 1 MiB every 50 ms, into a job of 50 MB: the meter on B sees it pass,
        # the engine stops it.
        spec = raw_job(
            "for i in $(seq 200); do head -c 1048576 /dev/zero >> $OUTPUTS/big; sleep 0.05; "
            "done; sleep 30",
            image=BUSYBOX,
            environment="smalldisk",
        )
        started = time.monotonic()
        job = await wait_final(engine, await engine.submit(spec), timeout=90)
        assert str(job.termination_reason) == "disk", (job.termination_reason, job.detail)
        assert time.monotonic() - started < 25  # not the 30 s sleep: stopped


# Last: it kills node B's engine, which `scripts/swarm-lab up` then starts again.
async def test_node_b_killed_while_the_algorithm_runs_ends_the_job_naming_the_node(
    lab: Lab, swarm_root: Path
) -> None:
    async with swarm_server(lab, swarm_root) as server:
        engine = server.engine
        job_id = await engine.submit(raw_job("echo up; sleep 120", image=BUSYBOX))
        await wait_status(engine, job_id, JobStatus.RUNNING_ALGORITHM, timeout=60)
        log = engine.live_log(job_id)
        assert log is not None
        async for chunk in log.follow():
            if b"up" in chunk:
                break  # it runs on B
        pid = int((REPO / "var" / "swarm-lab" / "b" / "docker.pid").read_text())
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        try:
            job = await wait_final(engine, job_id, timeout=90)
            took = time.monotonic() - killed_at
            assert lab.worker_node in job.detail and "went down" in job.detail, job.detail
            assert str(job.termination_reason) == "error"
            # The bound docs/swarm.md states: the manager's heartbeat, then the poll.
            assert took < 45, took
        finally:
            up = await asyncio.create_subprocess_exec(
                str(REPO / "scripts" / "swarm-lab"),
                "up",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            assert await up.wait() == 0
        # What B kept of the job goes once B is back: the sweep reaps it.
        deadline = time.monotonic() + 60
        while lab.left_behind(engine.instance) and time.monotonic() < deadline:
            await engine.scheduler.sweep()
            await asyncio.sleep(1)
