"""Engines on the real Docker engine, cleaned up after each test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from localcompute import AlgorithmSpec, Engine, FileSource, InputSpec, Job, JobSpec
from localcompute.core.errors import ReceiptError, StoreError
from localcompute.core.receipt import read_receipt
from tests.conftest import BUSYBOX_IMAGE, STARTED_INSTANCES, docker_ps, make_settings

pytestmark = pytest.mark.docker

EngineFactory = Callable[..., Awaitable[Engine]]


@pytest.fixture
async def engine_factory(
    data_dir: Path, busybox_image: str, request: pytest.FixtureRequest
) -> AsyncIterator[EngineFactory]:
    """Start engines on `data_dir`; at the end close them and insist nothing was left."""
    engines: list[Engine] = []

    async def make(**kwargs: Any) -> Engine:
        engine = Engine(make_settings(data_dir, **kwargs))
        await engine.start()
        STARTED_INSTANCES.add(engine.instance)
        engines.append(engine)
        return engine

    yield make
    instances = {e.instance for e in engines if e._scheduler is not None}
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        for engine in engines:
            if engine._scheduler is not None:
                with contextlib.suppress(StoreError):  # one the test closed itself
                    await print_job_logs(engine)
    for engine in engines:
        await engine.close()
    for instance in instances:
        left = docker_ps(f"label=localcompute.instance={instance}")
        if left:
            for cid in left:
                logs = subprocess.run(["docker", "logs", cid], capture_output=True, text=True)
                print(f"--- container {cid} left behind:\n{logs.stdout}{logs.stderr}")
            subprocess.run(["docker", "rm", "-f", *left], capture_output=True)
            pytest.fail(f"containers left behind: {left}")


async def print_job_logs(engine: Engine) -> None:
    """What each job's containers said (their logs are results), for a failed test's report."""
    for job in await engine.find():
        print(f"--- job {job.job_id}: {int(job.status)} {job.status_text} ({job.detail})")
        for index, result in enumerate(job.results):
            if result.type != "output":
                path = engine.result_path(job, index)
                text = await asyncio.to_thread(path.read_text, errors="replace")
                print(f"----- {result.filename}:\n{text}")


def raw_job(
    script: str,
    *,
    inputs: list[InputSpec] | None = None,
    environment: str = "test",
    image: str = BUSYBOX_IMAGE,
    **algorithm: Any,
) -> JobSpec:
    name, _, tag = image.partition(":")
    return JobSpec(
        environment=environment,
        owner="0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A",
        agreement_id="0xorder",
        inputs=inputs or [],
        algorithm=AlgorithmSpec(
            image=name,
            tag=tag or "latest",
            entrypoint=algorithm.pop("entrypoint", "sh $ALGO"),
            rawcode=script,
            **algorithm,
        ),
    )


def url_input(did: str, *urls: str) -> InputSpec:
    return InputSpec(did=did, files=[FileSource(url=u) for u in urls])


async def wait_final(engine: Engine, job_id: str, timeout: float = 60) -> Job:
    """Wait for a job's final state; a job waiting for a slot has no task yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = await engine.wait(job_id)
        if job.is_final:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish within {timeout} s: {job!r}")


async def wait_status(engine: Engine, job_id: str, status: int, timeout: float = 30) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = await engine.get(job_id)
        if job.status == status:
            return job
        if job.is_final:
            raise AssertionError(f"job {job_id} ended at {job.status} ({job.status_text})")
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {status}")


def receipt_problem(engine: Engine, job: Job) -> str:
    """What is wrong with a final job's receipt: "" when it has exactly one, listed last,
    signed by the engine's key, naming this job, its outcome and every other result."""
    names = [r.filename for r in job.results]
    if names.count("receipt.json") != 1 or names[-1] != "receipt.json":
        return f"{job.job_id}: results {names} do not end in one receipt.json"
    try:
        receipt = read_receipt(engine.result_path(job, len(names) - 1).read_bytes())
    except (OSError, ReceiptError) as e:
        return f"{job.job_id}: its receipt does not hold: {e}"
    if engine.key is None or receipt.signer != engine.key.address or receipt.job_id != job.job_id:
        return f"{job.job_id}: its receipt is another's ({receipt.signer}, {receipt.job_id})"
    named = {s.name: s.sha256 for s in receipt.subjects}
    if named != {r.filename: r.sha256 for r in job.results[:-1]}:
        return f"{job.job_id}: its receipt's subjects are not its results"
    products = receipt.section("runDetails").get("byproducts") or []
    said: dict[str, Any] = next(
        (p["annotations"] for p in products if p.get("name") == "outcome"), {}
    )
    if (text := said.get("statusText")) != job.status_text:
        return f"{job.job_id}: its receipt says {text!r}, the job {job.status_text!r}"
    return ""


def result_text(engine: Engine, job: Job, filename: str) -> str:
    index = next(i for i, r in enumerate(job.results) if r.filename == filename)
    return engine.result_path(job, index).read_text()


ROOT = Path(__file__).resolve().parents[2]


class KilledServer:
    def __init__(self, instance: str, job_ids: list[str]) -> None:
        self.instance = instance
        self.job_ids = job_ids


@pytest.fixture
def kill_server(data_dir: Path, busybox_image: str) -> Iterator[object]:
    """Run an engine in a child process, SIGKILL it while the first algorithm runs."""
    children: list[subprocess.Popen[str]] = []

    def run(specs: list[JobSpec], environments: object) -> KilledServer:
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.docker.engine_child",
                str(data_dir),
                json.dumps(environments),
                *(s.model_dump_json() for s in specs),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        children.append(child)
        assert child.stdout is not None
        instance, job_ids = "", []
        deadline = time.monotonic() + 60
        for line in child.stdout:
            word, _, value = line.strip().partition(" ")
            if word == "instance":
                instance = value
                STARTED_INSTANCES.add(value)
            elif word == "submitted":
                job_ids.append(value)
            elif word == "running":
                break
            assert time.monotonic() < deadline, "the child engine never ran the job"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        child.stdout.close()
        return KilledServer(instance, job_ids)

    yield run
    for child in children:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
