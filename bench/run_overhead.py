"""What `localcompute run` adds to the job it runs.

Alternates, N times in one run: the same trivial job (one local input, busybox
writing one output) through a warm in-process engine, submit → final (the job's
own latency: the floor the command cannot beat), and `localcompute run` of it as
a person types it, wall clock from exec to exit, results downloaded. Also times
the bare Python start with the command's imports, which the command pays before
anything else. Prints medians, what the command adds, and how much of that is
loading Python libraries.

    .venv/bin/python bench/run_overhead.py [-n 7]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from localcompute import AlgorithmSpec, Engine, FileSource, InputSpec, JobSpec, JobStatus
from localcompute.core.settings import DockerSettings, EnvironmentSettings, ServerSettings, Settings

BUSYBOX = "localcompute/busybox"
SCRIPT = "cat /data/inputs/*/0 > /data/outputs/copy.txt\n"
IMPORTS = "import localcompute.cli.run, localcompute.web.serving, localcompute.engine"


async def engine_job(engine: Engine, data: Path) -> float:
    spec = JobSpec(
        environment="bench",
        inputs=[InputSpec(did="did:op:" + "ab" * 32, files=[FileSource(path=str(data))])],
        algorithm=AlgorithmSpec(image=BUSYBOX, entrypoint="sh $ALGO", rawcode=SCRIPT),
    )
    start = time.perf_counter()
    job = await engine.wait(await engine.submit(spec))
    elapsed = time.perf_counter() - start
    assert job.status == JobStatus.JOB_COMPLETED, job.status_text
    return elapsed


def command(work: Path, i: int) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "localcompute", "run", "algo.sh", "--image", BUSYBOX, *more(i)],
        cwd=work,
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_CACHE_HOME": str(work / "cache")},
    )
    elapsed = time.perf_counter() - start
    assert done.returncode == 0, done.stdout + done.stderr
    assert (work / f"out{i}" / "copy.txt").read_text() == "a,b\n1,2\n"
    return elapsed


def more(i: int) -> list[str]:
    return ["--input", "data.csv", "--out", f"out{i}"]


def imports() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", IMPORTS], check=True)
    return time.perf_counter() - start


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "data.csv").write_text("a,b\n1,2\n")
        (work / "algo.sh").write_text(SCRIPT)
        settings = Settings(
            server=ServerSettings(data_dir=work / "var"),
            docker=DockerSettings(pull_policy="never"),
            environments=[EnvironmentSettings(id="bench", max_jobs=1)],
            provider={"dataset_roots": [str(work)]},
        )
        engine = Engine(settings)
        await engine.start()
        jobs: list[float] = []
        runs: list[float] = []
        loads: list[float] = []
        try:
            await engine_job(engine, work / "data.csv")  # warm-up
            await asyncio.to_thread(command, work, -1)
            for i in range(n):
                jobs.append(await engine_job(engine, work / "data.csv"))
                runs.append(await asyncio.to_thread(command, work, i))
                loads.append(await asyncio.to_thread(imports))
        finally:
            await engine.close()
    job, run, load = (statistics.median(x) for x in (jobs, runs, loads))
    print(f"runs: {n} of each, alternating")
    print(f"the job itself (warm engine, submit → final): median {job * 1000:.0f} ms")
    print(f"localcompute run, exec → exit:                 median {run * 1000:.0f} ms")
    print(f"python start + the command's imports:          median {load * 1000:.0f} ms")
    print(f"the command adds {(run - job) * 1000:.0f} ms (ratio {run / job:.2f});")
    print(f"beyond loading Python and its libraries: {(run - job - load) * 1000:.0f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=7, help="runs of each kind")
    asyncio.run(main(parser.parse_args().n))
