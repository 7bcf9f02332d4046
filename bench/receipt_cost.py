"""What a job's receipt costs: building, signing and writing it, against the physical
floor of one trivial container (docker-py: create, start, wait, remove of busybox
`true`), both measured in this run. A job runs three containers; the goal is a receipt
under 1 % of one.

    .venv/bin/python bench/receipt_cost.py [-n 200] [--containers 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import verdict
from localcompute import AlgorithmSpec, Engine, JobSpec
from localcompute.engine.outcome import resolve
from localcompute.runtime.workspace import Workspace
from localcompute.store.memory import MemoryStore
from localcompute.testing import FakeRuntime
from tests.conftest import make_settings

BUSYBOX = "localcompute/busybox"


async def receipt_seconds(rounds: int) -> float:
    """The median time of one receipt of a finished trivial job (its fetch, algorithm and
    filter run by the FakeRuntime: the receipt reads the same files it would)."""
    with tempfile.TemporaryDirectory() as folder:
        engine = Engine(make_settings(Path(folder)), runtime=FakeRuntime(), store=MemoryStore())
        await engine.start()
        try:
            spec = JobSpec(
                environment="test",
                owner="0xa",
                algorithm=AlgorithmSpec(
                    image="busybox", entrypoint="sh $ALGO", rawcode="echo hi > $OUTPUTS/a.txt"
                ),
            )
            job = await engine.wait(await engine.submit(spec))
            receipts = engine.scheduler.pipeline.receipts
            ws = Workspace.of(engine.settings.data_dir, job.job_id)
            outcome, results = resolve(job, None), job.results[:-1]
            times = []
            for _ in range(rounds):
                start = time.perf_counter()
                receipts.write(ws, job, outcome, results)
                times.append(time.perf_counter() - start)
            return statistics.median(times)
        finally:
            await engine.close()


def container_seconds(rounds: int) -> float:
    """The median time of one bare trivial container: the floor a job step cannot pass."""
    client = docker.from_env()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        container = client.containers.create(BUSYBOX, ["true"], network_mode="none")
        container.start()
        container.wait()
        container.remove(force=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=200, help="receipts to time")
    parser.add_argument("--containers", type=int, default=10, help="bare containers to time")
    args = parser.parse_args()
    floor = container_seconds(args.containers)
    receipt = asyncio.run(receipt_seconds(args.n))
    share = receipt / floor
    print(f"bare container (floor): {floor * 1000:.1f} ms median of {args.containers}")
    print(f"receipt (build, sign, write): {receipt * 1000:.2f} ms median of {args.n}")
    print(f"receipt / one container: {share:.4f} ({share * 100:.2f} %); {verdict(share < 0.01)}")


if __name__ == "__main__":
    main()
