"""What `localcompute run` adds to the job it runs, against the goal: no more than 0.5 s.

Alternates, N times in one run: the same trivial job (one local input, busybox
writing one output) through a warm in-process engine, submit → final (the job's
own latency: the floor the command cannot beat), and `localcompute run` of it as
a person types it, wall clock from exec to exit, results downloaded. Also times
Python's start and the imports the command makes before anything else (exec to
imported, without the interpreter's tear-down). Prints medians, what the command
adds, how much of that is loading Python and its libraries, and whether the goal
(the command within the job + 0.5 s) is met.

The command runs with its bytecode cached, as an installed package has it (pip
compiles it at install): the environment's PYTHONDONTWRITEBYTECODE is lifted and the
cache kept in the bench's own folder (PYTHONPYCACHEPREFIX), written by the warm-up
run. --no-bytecode-cache runs it as a checkout under PYTHONDONTWRITEBYTECODE=1 does,
compiling localcompute's ~150 modules again on every run.

    .venv/bin/python bench/run_overhead.py [-n 7] [--no-bytecode-cache]
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
# Every module `localcompute run` loads, as its own code imports them.
IMPORTS = (
    "import localcompute.cli, localcompute.cli.run, localcompute.cli.local_jobs, "
    "localcompute.engine, localcompute.runtime.choice, localcompute.runtime.local.docker, "
    "localcompute.runtime.local.disk"
)
GOAL_SECONDS = 0.5  # issue 29: the command within the job's own time + 0.5 s


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


def command(work: Path, i: int, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "localcompute", "run", "algo.sh", "--image", BUSYBOX, *more(i)],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
    )
    elapsed = time.perf_counter() - start
    assert done.returncode == 0, done.stdout + done.stderr
    assert (work / f"out{i}" / "copy.txt").read_text() == "a,b\n1,2\n"
    return elapsed


def more(i: int) -> list[str]:
    return ["--input", "data.csv", "--out", f"out{i}"]


def imports(env: dict[str, str]) -> float:
    """Exec to the command's modules loaded, as the command loads them (the collector
    off: localcompute/__main__.py); os._exit leaves out the tear-down, as it does."""
    code = f"import gc, os; gc.disable(); {IMPORTS}; os._exit(0)"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    return time.perf_counter() - start


def environment(work: Path, bytecode_cache: bool) -> dict[str, str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(work / "cache")}
    if bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    return env


async def main(n: int, bytecode_cache: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "data.csv").write_text("a,b\n1,2\n")
        (work / "algo.sh").write_text(SCRIPT)
        env = environment(work, bytecode_cache)
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
            await asyncio.to_thread(command, work, -1, env)  # and the bytecode cache written
            for i in range(n):
                jobs.append(await engine_job(engine, work / "data.csv"))
                runs.append(await asyncio.to_thread(command, work, i, env))
                loads.append(await asyncio.to_thread(imports, env))
        finally:
            await engine.close()
    job, run, load = (statistics.median(x) for x in (jobs, runs, loads))
    adds = run - job
    print(f"runs: {n} of each, alternating; bytecode {'cached' if bytecode_cache else 'compiled'}")
    print(f"the job itself (warm engine, submit → final): median {job * 1000:.0f} ms")
    print(f"localcompute run, exec → exit:                 median {run * 1000:.0f} ms")
    print(f"python start + the command's imports:          median {load * 1000:.0f} ms")
    print(f"the command adds {adds * 1000:.0f} ms (ratio {run / job:.2f});")
    print(f"beyond loading Python and its libraries: {(adds - load) * 1000:.0f} ms")
    margin = abs(adds - GOAL_SECONDS) * 1000
    verdict = (
        f"met, {margin:.0f} ms to spare" if adds <= GOAL_SECONDS else f"not met, by {margin:.0f} ms"
    )
    print(f"goal (command ≤ job + {GOAL_SECONDS:g} s): {verdict}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=7, help="runs of each kind")
    parser.add_argument(
        "--no-bytecode-cache",
        dest="bytecode_cache",
        action="store_false",
        help="compile every module on each run (PYTHONDONTWRITEBYTECODE, no cache)",
    )
    args = parser.parse_args()
    asyncio.run(main(args.n, args.bytecode_cache))
