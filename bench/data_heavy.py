"""What a data-heavy job pays for its data: a URL input of N MiB, an output of N MiB.

For each size (64 and 512 MiB by default), in one run: a job through a warm in-process
engine (an environment of 2 pinned cores and room for both files) whose input is a URL on
this host and whose algorithm copies it to one output; beside it the floors, alternating:
curl of the same URL into a file, and one bare container lifecycle (create, start, wait,
remove of `busybox true`, docker-py's low-level API). Prints the phases (fetch,
algorithm, filter, publish: publish from the filter's end to the final status), the
floors, and the two goals as met or not:

- publishing an output costs at most 1.0 s in all, after the algorithm (the filter
  and the publish together: at most one read of the bytes for their sha256, no copy);
- the fetch takes at most 1.5 x curl of the same URL plus one container's lifecycle.

Once for each disk quota asked for (default: what `auto` picks here, and `watch`, a
plain folder): where the job's folder and the results are one file system the filter
renames an output, elsewhere (a loop image) it has to copy it.

    .venv/bin/python bench/data_heavy.py [--mib 64 --mib 512] [-n 3] [--disk-quota loop ...]
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import bare_lifecycle, verdict
from localcompute import AlgorithmSpec, Engine, FileSource, InputSpec, Job, JobSpec, JobStatus
from localcompute.core.settings import (
    DockerSettings,
    EnvironmentSettings,
    PoolSettings,
    ServerSettings,
    Settings,
)

BUSYBOX = "localcompute/busybox"
COPY = "cat /data/inputs/*/0 > $OUTPUTS/out.bin"
MIB = 1024 * 1024


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def make_input(path: Path, mib: int) -> None:
    """Incompressible-looking bytes (no holes to skip, nothing a filesystem could share)."""
    block = bytes(range(256)) * 4096  # 1 MiB
    with path.open("wb") as out:
        for i in range(mib):
            out.write(block[i % 256 :] + block[: i % 256])


def curl(url: str, target: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["curl", "-sf", "-o", str(target), url], check=True)
    elapsed = time.perf_counter() - start
    target.unlink()
    return elapsed


def phases(job: Job) -> dict[str, float]:
    def span(a: float | None, b: float | None) -> float:
        assert a is not None and b is not None
        return b - a

    return {
        "fetch": span(job.fetch_started_at, job.fetch_finished_at),
        "algorithm": span(job.algorithm_started_at, job.algorithm_finished_at),
        "filter": span(job.filter_started_at, job.filter_finished_at),
        "publish": span(job.filter_finished_at, job.date_finished),
    }


async def engine_job(engine: Engine, url: str, mib: int) -> tuple[float, dict[str, float]]:
    spec = JobSpec(
        environment="bench",
        inputs=[InputSpec(did="did:op:" + "cd" * 32, files=[FileSource(url=url)])],
        algorithm=AlgorithmSpec(image=BUSYBOX, entrypoint="sh $ALGO", rawcode=COPY),
    )
    start = time.perf_counter()
    job = await engine.wait(await engine.submit(spec))
    elapsed = time.perf_counter() - start
    assert job.status == JobStatus.JOB_COMPLETED, job.status_text
    [out] = [r for r in job.results if r.filename == "out.bin"]
    assert out.filesize == mib * MIB
    await engine.delete(job.job_id)
    return elapsed, phases(job)


async def main(sizes: list[int], n: int, quotas: list[str]) -> None:
    api = docker.APIClient()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = work / "files"
        files.mkdir()
        for mib in sizes:
            make_input(files / f"{mib}.bin", mib)
        server, base = serve(files)
        try:
            for quota in quotas:
                await one_quota(api, work / quota, base, sizes, n, quota)
        finally:
            server.shutdown()


async def one_quota(
    api: docker.APIClient, work: Path, base: str, sizes: list[int], n: int, quota: str
) -> None:
    await asyncio.to_thread(work.mkdir)
    disk = 2 * max(sizes) / 1024 + 0.5
    settings = Settings(
        server=ServerSettings(data_dir=work / "var"),
        docker=DockerSettings(pull_policy="never", fetch_network="host"),
        pool=PoolSettings(disk_quota=quota),
        environments=[EnvironmentSettings(id="bench", cpu=2, disk_gb=disk, ram_gb=2)],
    )
    engine = Engine(settings)
    await engine.start()
    hard = "hard" if engine.disk.hard else "soft"
    print(f"disk quota {quota}: {engine.disk.mechanism} ({hard})", flush=True)
    try:
        await engine_job(engine, f"{base}/{sizes[0]}.bin", sizes[0])  # warm-up
        for mib in sizes:
            url = f"{base}/{mib}.bin"
            totals, seen, curls, lives = [], [], [], []
            for _ in range(n):
                total, took = await engine_job(engine, url, mib)
                totals.append(total)
                seen.append(took)
                curls.append(await asyncio.to_thread(curl, url, work / "curl.bin"))
                lives.append(await asyncio.to_thread(bare_lifecycle, api))
            med = {k: statistics.median(s[k] for s in seen) for k in seen[0]}
            c, life = statistics.median(curls), statistics.median(lives)
            publishing = med["filter"] + med["publish"]
            fetch_goal = 1.5 * c + life
            total = statistics.median(totals)
            print(f"{mib} MiB in, {mib} MiB out: submit → 70 median {total:.2f} s")
            print("  " + "  ".join(f"{k} {v:.2f} s" for k, v in med.items()))
            print(f"  floors: curl {c:.2f} s, a container's lifecycle {life:.2f} s")
            print(
                f"  publishing (filter + publish) {publishing:.2f} s ≤ 1.0 s: "
                f"{verdict(publishing <= 1.0)}"
            )
            print(
                f"  fetch {med['fetch']:.2f} s ≤ 1.5 x curl + a lifecycle = "
                f"{fetch_goal:.2f} s: {verdict(med['fetch'] <= fetch_goal)}",
                flush=True,
            )
    finally:
        await engine.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, action="append", help="sizes (default 64 and 512)")
    parser.add_argument("-n", type=int, default=3, help="jobs of each size")
    parser.add_argument(
        "--disk-quota",
        action="append",
        choices=["auto", "xfs", "loop", "watch"],
        help="the [pool] disk_quota of a run (default: auto, then watch)",
    )
    args = parser.parse_args()
    asyncio.run(main(args.mib or [64, 512], args.n, args.disk_quota or ["auto", "watch"]))
