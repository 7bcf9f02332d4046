"""The server's memory over many jobs: whether it levels off.

Starts one server process and runs a warm-up of jobs: the bounded caches fill (the
store's last 64 finished jobs, the last 64 provider status answers, which only every
other job makes; SQLite's page cache, 2 MiB, which grows with the store by about
2 KiB a job until it is full, some 1,000 jobs in) and the allocator settles. Then it
reads the process's resident memory (VmRSS in /proc/<pid>/status), runs N more jobs
P at a time, reading it again at each quarter, and prints the growth per job over
the N: the goal is at most 1 KiB. Each job is what a client does: a signed start,
alternately in Ocean Node's dialect and the provider's, then its status polled every
50 ms until it is final.

Without --fake the server is `localcompute serve` on the real Docker engine. With
--fake it is the same application served over the FakeRuntime (containers are host
processes, no Docker), so 1,000 jobs take minutes.

    .venv/bin/python bench/memory_soak.py --fake [-n 1000] [--warm-up 1000] [-p 4]
    .venv/bin/python bench/memory_soak.py [-n 200] [--warm-up 1000] [-p 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import verdict
from localcompute.client import Client, Key, NodeClient
from localcompute.core.status import JobStatus

BUSYBOX = "localcompute/busybox"
SCRIPT = "echo trivial > $OUTPUTS/out.txt"
DATASET = "did:op:" + "ab" * 32
GOAL_KIB = 1.0


def config_text(work: Path, slots: int) -> str:
    (work / "data.csv").write_text("x\n")
    return (
        '[server]\nport = 0\ndata_dir = "var"\n'
        '[docker]\npull_policy = "never"\nfetch_network = "host"\n'
        f'[[environments]]\nid = "bench"\nmax_jobs = {slots}\n'
        f'[provider]\ndataset_roots = ["{work}"]\n'
        f'[[datasets]]\ndid = "{DATASET}"\nfiles = ["{work / "data.csv"}"]\n'
        "[limits]\nexempt_loopback = true\n"  # it polls from this host as fast as it can
    )


@contextlib.contextmanager
def served(work: Path, slots: int, fake: bool) -> Iterator[tuple[str, int]]:
    """One server process of its own, started as a user starts it (or over the
    FakeRuntime with --fake); its URL and process id."""
    config = work / "soak.toml"
    config.write_text(config_text(work, slots))
    if fake:
        command = [sys.executable, __file__, "--serve-fake", str(config)]
    else:
        command = [sys.executable, "-m", "localcompute", "serve", "--config", str(config)]
        command += ["--log-level", "warning"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=work)
    try:
        assert server.stdout is not None
        yield server.stdout.readline().split()[-1], server.pid
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)


def rss_kib(pid: int) -> int:
    """The process's resident memory now, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


async def run_jobs(url: str, count: int, parallel: int) -> None:
    """`count` jobs, `parallel` at a time, each worker a client of its own key."""
    left = iter(range(count))

    async def worker(key: Key) -> None:
        async with Client(url, key) as provider, NodeClient(url + "/node", key) as node:
            for i in left:
                client: Client | NodeClient = node if i % 2 else provider
                job = await client.start(
                    [DATASET],
                    rawcode=SCRIPT,
                    image=BUSYBOX,
                    entrypoint="sh $ALGO",
                    environment="bench",
                )
                done = await client.wait(job.job_id, poll=0.05)
                assert done.status == JobStatus.JOB_COMPLETED, done.status_text

    await asyncio.gather(*(worker(Key.random()) for _ in range(parallel)))


async def main(n: int, warm_up: int, parallel: int, fake: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp, served(Path(tmp), parallel, fake) as (url, pid):
        start = time.perf_counter()
        await run_jobs(url, warm_up, parallel)
        base = rss_kib(pid)
        runtime = "FakeRuntime" if fake else "Docker"
        print(
            f"{runtime}, one server process, {parallel} jobs at a time; "
            f"after a warm-up of {warm_up} jobs ({time.perf_counter() - start:.0f} s): "
            f"RSS {base / 1024:.1f} MiB",
            flush=True,
        )
        done = 0
        for quarter in range(1, 5):
            batch = n * quarter // 4 - done
            await run_jobs(url, batch, parallel)
            done += batch
            rss = rss_kib(pid)
            print(
                f"  after {done:5d} more jobs: RSS {rss / 1024:.1f} MiB, "
                f"{(rss - base) / done:+.2f} KiB a job",
                flush=True,
            )
        per_job = (rss_kib(pid) - base) / n
        print(
            f"growth over {n} jobs after the warm-up: {per_job:.2f} KiB a job; "
            f"≤ {GOAL_KIB:g} KiB: {verdict(per_job <= GOAL_KIB)}"
        )


def serve_fake(config: Path) -> None:
    """The child of --fake: the served application over a FakeRuntime, on uvloop as
    `localcompute serve` runs, until SIGTERM; the URL on stdout as serve prints it."""
    import uvloop

    from localcompute.core.config_file import load_settings
    from localcompute.engine import Engine
    from localcompute.runtime import ContainerSpec
    from localcompute.testing import FakeRuntime
    from localcompute.web.serving import serving

    class SoakRuntime(FakeRuntime):
        """The fake keeps the name of every container it ever made, for tests: the
        fake's memory, not the server's, so the soak does not let it keep them."""

        async def create(self, spec: ContainerSpec) -> None:
            await super().create(spec)
            self.created.clear()

    async def serve() -> None:
        settings = load_settings(config)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with serving(settings, engine=Engine(settings, runtime=SoakRuntime())) as url:
            print(f"localcompute listening on {url}", flush=True)
            await stop.wait()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, help="jobs measured (default: 1000 with --fake, else 200)")
    parser.add_argument("--warm-up", type=int, default=1000, help="jobs before the first reading")
    parser.add_argument("-p", "--parallel", type=int, default=4, help="jobs at a time")
    parser.add_argument("--fake", action="store_true", help="over the FakeRuntime: no Docker")
    parser.add_argument("--serve-fake", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake is not None:
        serve_fake(args.serve_fake)
    else:
        n = args.n or (1000 if args.fake else 200)
        asyncio.run(main(n, args.warm_up, args.parallel, args.fake))
