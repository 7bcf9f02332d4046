"""Status and environments at scale: what clients poll, with 10,000 jobs in the store.

Fills a fresh data folder with N finished jobs of 100 owners, starts one server
process (`localcompute serve`), and drives it with wrk from its own process: status
of random jobs (each request a different job and owner), then computeEnvironments.
Prints requests a second and latency percentiles, the query plans of the store's
reads (indexes, not scans), and one job's latency alone and under the status load.

    .venv/bin/python bench/status_load.py [--jobs 10000] [--seconds 10]

Needs wrk (apt-get install wrk) and the Docker engine.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from localcompute.client import Client, Key
from localcompute.core.jobspec import AlgorithmSpec, JobSpec
from localcompute.core.models import JobQuery
from localcompute.core.signing import Key as Signer
from localcompute.store import JobStore
from localcompute.store.queries import SQL_COUNT_SLOTS, SQL_GET_JOB, select_jobs

OWNERS = 100
LUA = """
local lines = {}
for line in io.lines("%s") do lines[#lines + 1] = line end
math.randomseed(os.time())
request = function()
  local owner, job = lines[math.random(#lines)]:match("(%%S+) (%%S+)")
  return wrk.format("GET", "/api/services/compute?consumerAddress=" .. owner .. "&jobId=" .. job)
end
"""


async def fill(data_dir: Path, jobs: int) -> list[tuple[str, str]]:
    owners = [Signer(bytes([i + 1]) * 32).address for i in range(OWNERS)]
    store = JobStore(data_dir / "localcompute.sqlite")
    await store.open()
    made = []
    algorithm = AlgorithmSpec(image="localcompute/busybox", entrypoint="sh $ALGO", rawcode="true")
    async with store.transaction() as tx:
        for i in range(jobs):
            owner = owners[i % OWNERS]
            spec = JobSpec(environment="bench", owner=owner, algorithm=algorithm, api="provider")
            made.append((owner, await tx.insert_job(spec, max_duration=60)))
    await store.close()
    with sqlite3.connect(data_dir / "localcompute.sqlite") as db:  # as if they had run
        db.execute(
            "UPDATE jobs SET status = 70, termination_reason = 'completed', "
            "date_finished = date_created + 1"
        )
    return made


def query_plans(db_path: Path, owner: str, job_id: str) -> list[str]:
    reads = {
        "status by jobId": (SQL_GET_JOB, (job_id,)),
        "status by owner": select_jobs(JobQuery(owner=owner)),
        "unfinished jobs": select_jobs(JobQuery(unfinished=True)),
        "slots in use": (SQL_COUNT_SLOTS, ()),
    }
    lines = []
    with sqlite3.connect(db_path) as db:
        for name, (sql, params) in reads.items():
            plan = db.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
            lines.append(f"  {name:16} " + "; ".join(str(row[-1]) for row in plan))
    return lines


def wrk(url: str, seconds: int, script: Path | None = None) -> tuple[float, dict[str, str]]:
    command = ["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.M))
    return rate, latency


async def one_job(url: str) -> float:
    async with Client(url, Key.random()) as client:
        start = time.perf_counter()
        job = await client.start(
            ["did:op:" + "ab" * 32],
            rawcode="echo hi > $OUTPUTS/hi.txt",
            image="localcompute/busybox",
            entrypoint="sh $ALGO",
        )
        done = await client.wait(job.job_id, poll=0.05)
        assert done.status == 70, done.reason
        return time.perf_counter() - start


def main(jobs: int, seconds: int) -> None:
    if shutil.which("wrk") is None:
        sys.exit("bench/status_load.py needs wrk: apt-get install wrk")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data_dir = work / "var"
        data_dir.mkdir()
        (work / "data.csv").write_text("x\n")
        made = asyncio.run(fill(data_dir, jobs))
        (work / "ids.txt").write_text("\n".join(f"{o} {j}" for o, j in made) + "\n")
        (work / "status.lua").write_text(LUA % (work / "ids.txt"))
        (work / "c.toml").write_text(
            f'[server]\nport = 0\ndata_dir = "var"\n[docker]\npull_policy = "never"\n'
            f'[[environments]]\nid = "bench"\nmax_jobs = 2\n'
            f'[provider]\ndataset_roots = ["{work}"]\n'
            f'[[datasets]]\ndid = "did:op:{"ab" * 32}"\nfiles = ["{work / "data.csv"}"]\n'
            # wrk is one client on this host at full speed: what is measured is the server.
            "[limits]\nexempt_loopback = true\n"
        )
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "localcompute",
                "serve",
                "--config",
                str(work / "c.toml"),
                "--log-level",
                "warning",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            url = server.stdout.readline().split()[-1]
            print(f"{jobs} finished jobs of {OWNERS} owners; one server process, wrk -t1 -c32")
            print("query plans:")
            print("\n".join(query_plans(data_dir / "localcompute.sqlite", *made[jobs // 2])))
            wrk(url, 3, work / "status.lua")  # warm-up: the first read of each job
            rate, lat = wrk(url, seconds, work / "status.lua")
            print(f"status, random job:  {rate:7.0f} req/s, p50 {lat['50']}, p99 {lat['99']}")
            rate, lat = wrk(url + "/api/services/computeEnvironments", seconds)
            print(f"computeEnvironments: {rate:7.0f} req/s, p50 {lat['50']}, p99 {lat['99']}")
            alone = asyncio.run(one_job(url))
            loaded: list[float] = []
            load = threading.Thread(target=wrk, args=(url, seconds, work / "status.lua"))
            load.start()
            time.sleep(1)
            loaded.append(asyncio.run(one_job(url)))
            load.join()
            print(
                f"one job, submit → final: {alone * 1000:.0f} ms alone, "
                f"{loaded[0] * 1000:.0f} ms under the status load"
            )
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    main(args.jobs, args.seconds)
