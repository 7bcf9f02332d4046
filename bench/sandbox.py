"""What gVisor costs: the same jobs in an environment under runc and one under runsc, in one
run, against the physical floor (a bare `docker run` of busybox `true` under each).

  trivial  a whole job of `true` (fetch, algorithm, filter, publish), submit to final
  cpu      an algorithm that only computes (awk arithmetic): its run time
  pipe     an algorithm that hashes 256 MiB through a pipe (syscall-bound): its run time
  io       an algorithm that writes 256 MiB to its outputs and reads it back: its run time

Prints each median and the runsc/runc ratio. Needs the engine to have runsc registered
(`scripts/run setup --sandbox`).

    .venv/bin/python bench/sandbox.py [--rounds 5]
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

from localcompute import AlgorithmSpec, Engine, JobSpec
from tests.conftest import make_settings

BUSYBOX = "localcompute/busybox"
CASES = {
    "trivial": "true",
    # Arithmetic only, no syscalls: what the sandbox costs a computation.
    "cpu": "awk 'BEGIN { for (i = 0; i < 20000000; i++) s += i % 7; print s }' > $OUTPUTS/sum",
    # A pipe of 256 MiB: a syscall every few KiB, each a trip through gVisor's kernel.
    "pipe": "head -c 268435456 /dev/zero | sha256sum > $OUTPUTS/sum",
    "io": (
        "dd if=/dev/zero of=$OUTPUTS/big bs=1M count=256 2>/dev/null && "
        "cat $OUTPUTS/big | wc -c > $OUTPUTS/read && rm $OUTPUTS/big"
    ),
}


def bare_seconds(runtime: str, rounds: int) -> float:
    """The floor: docker run --rm of busybox true, create to removal."""
    client = docker.from_env()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        client.containers.run(BUSYBOX, ["true"], network_mode="none", runtime=runtime, remove=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def job_seconds(rounds: int) -> dict[tuple[str, str], float]:
    """(case, runtime) → median seconds: a whole job for trivial, the algorithm's run else."""
    envs = [
        {"id": "runc", "cpu": 1, "ram_gb": 1, "disk_gb": 1, "max_job_duration": 300},
        {"id": "runsc", "cpu": 1, "ram_gb": 1, "disk_gb": 1, "max_job_duration": 300},
    ]
    envs[1]["runtime"] = "runsc"
    found: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        engine = Engine(make_settings(Path(folder), environments=envs))
        await engine.start()
        try:
            if "runsc" in engine.unavailable:
                raise SystemExit(f"runsc is unavailable: {engine.unavailable['runsc']}")
            for _ in range(rounds):
                for case, script in CASES.items():
                    for env in ("runc", "runsc"):  # alternated: the host's noise on both
                        algorithm = AlgorithmSpec(
                            image=BUSYBOX, entrypoint="sh $ALGO", rawcode=script
                        )
                        start = time.perf_counter()
                        job_id = await engine.submit(
                            JobSpec(environment=env, owner="0xbench", algorithm=algorithm)
                        )
                        job = await engine.wait(job_id)
                        took = time.perf_counter() - start
                        if job.exit_code != 0:
                            raise SystemExit(
                                f"{case} under {env} failed: {job.detail or job.exit_code}"
                            )
                        if case != "trivial":
                            took = (job.algorithm_finished_at or 0) - (
                                job.algorithm_started_at or 0
                            )
                        found.setdefault((case, env), []).append(took)
        finally:
            await engine.close()
    return {key: statistics.median(values) for key, values in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    floor = {rt: bare_seconds(rt, args.rounds) for rt in ("runc", "runsc")}
    jobs = asyncio.run(job_seconds(args.rounds))
    print(f"{'':28s} {'runc':>9s} {'runsc':>9s} {'runsc/runc':>11s}")
    rows = [("bare docker run (the floor)", floor["runc"], floor["runsc"])]
    rows += [
        (
            f"{case} ({'whole job' if case == 'trivial' else 'algorithm'})",
            jobs[case, "runc"],
            jobs[case, "runsc"],
        )
        for case in CASES
    ]
    for name, runc, runsc in rows:
        print(f"{name:28s} {runc * 1000:7.0f} ms {runsc * 1000:7.0f} ms {runsc / runc:10.2f}x")
    trivial = jobs["trivial", "runc"], jobs["trivial", "runsc"]
    print(
        f"a trivial job is {trivial[0] / floor['runc']:.2f}x the runc floor under runc, "
        f"{trivial[1] / floor['runsc']:.2f}x the runsc floor under runsc"
    )


if __name__ == "__main__":
    main()
