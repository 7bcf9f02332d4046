"""`localcompute run`: an algorithm on local files, as Ocean would run it, in one command.

Without --server it serves an engine inside the command (port 0 on 127.0.0.1, a
data folder of its own) and talks to it through localcompute.client, exactly as it
talks to a remote provider with --server: the same requests, signatures and
results. The algorithm sees Ocean's layout and variables, so what runs here runs
on Ocean.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from localcompute.cli.display import human_size
from localcompute.cli.exits import (
    EXIT_ALGORITHM_FAILED,
    EXIT_DATA_FAILED,
    EXIT_OOM,
    EXIT_STOPPED,
    EXIT_SYSTEM,
    EXIT_TIMEOUT,
)
from localcompute.client import Client, Key, RemoteJob, load_key
from localcompute.core.errors import ConfigError, RemoteError

# What each status means to the person watching, as a phase line.
PHASES = {
    1: "waiting for a free slot",
    10: "started",
    20: "fetch: inputs and algorithm into place, image pulled meanwhile",
    30: "provisioned",
    40: "algorithm running",
    50: "filter: collecting the outputs",
    60: "publish",
}
# Defaults by the algorithm file's extension, so `localcompute run algo.py` just works.
CONTAINERS = {
    ".py": ("python", "3.12-slim", "python $ALGO"),
    ".js": ("node", "20-slim", "node $ALGO"),
    ".sh": ("busybox", "latest", "sh $ALGO"),
}


def add_parser(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="run an algorithm on local files or URLs, as Ocean would, and fetch its results",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("algorithm", type=Path, help="the algorithm's file (its code is sent raw)")
    run.add_argument("--image", help="its image (default by extension: .py → python, …)")
    run.add_argument("--tag", help="the image's tag")
    run.add_argument("--entrypoint", help="how to run it; $ALGO is the algorithm's path")
    run.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="FILE|URL|DID",
        help="a dataset: a local file or URL (without --server), a DID (with); repeatable",
    )
    run.add_argument("--custom-data", type=Path, help="JSON file: /data/inputs/algoCustomData.json")
    run.add_argument("--env", help="the environment (with --server; default: the first free)")
    run.add_argument("--cpu", type=float, help="CPUs for the job (without --server; default 1)")
    run.add_argument("--ram-gb", type=float, help="memory in GiB (without --server; default 2)")
    run.add_argument("--gpus", type=int, help="GPUs (without --server; default 0)")
    run.add_argument("--max-time", type=float, help="seconds the algorithm may run (default 3600)")
    run.add_argument("--network", action="store_true", help="give the algorithm a network")
    run.add_argument("--out", type=Path, help="where results go (default ./results/<jobId>/)")
    run.add_argument("--server", help="a running provider's URL instead of a local engine")
    run.add_argument("--key-file", type=Path, help="the consumer key (with --server)")
    run.add_argument("--data-dir", type=Path, help="the local engine's folder (kept)")
    run.add_argument("--json", action="store_true", help="print the final status object only")


@dataclass
class Console:
    """Phase lines and the algorithm's output: to stdout, or to stderr with --json."""

    out: TextIO
    started: float = field(default_factory=time.monotonic)

    def phase(self, text: str) -> None:
        self.out.write(f"[{time.monotonic() - self.started:6.1f}s] {text}\n")
        self.out.flush()

    def line(self, text: str) -> None:
        self.out.write(f"  | {text}\n")
        self.out.flush()


def main(args: argparse.Namespace) -> int:
    """The exit code of the job; an error is left to localcompute.cli.exits."""
    return asyncio.run(_run(args))


@dataclass(frozen=True)
class Algorithm:
    rawcode: str
    image: str
    tag: str
    entrypoint: str
    custom_data: Any


def _algorithm(args: argparse.Namespace) -> Algorithm:
    try:
        rawcode = args.algorithm.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the algorithm {args.algorithm}: {e}") from e
    image, tag, entrypoint = CONTAINERS.get(args.algorithm.suffix, (None, "latest", None))
    image, tag = args.image or image, args.tag or tag
    entrypoint = args.entrypoint or entrypoint
    if image is None or entrypoint is None:
        raise ConfigError(
            f"no default container for {args.algorithm.suffix or 'this file'}: "
            "give --image and --entrypoint (e.g. --image python --entrypoint 'python $ALGO')"
        )
    custom = None
    if args.custom_data is not None:
        try:
            custom = json.loads(args.custom_data.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ConfigError(f"--custom-data {args.custom_data}: {e}") from e
    return Algorithm(rawcode, image, tag, entrypoint, custom)


async def _run(args: argparse.Namespace) -> int:
    algorithm = _algorithm(args)
    console = Console(sys.stderr if args.json else sys.stdout)
    if args.server:
        if any(v is not None for v in (args.cpu, args.ram_gb, args.gpus, args.max_time)):
            raise ConfigError("--cpu, --ram-gb, --gpus and --max-time are local: use --env")
        if not args.input or not all(i.startswith("did:") for i in args.input):
            raise ConfigError("with --server, every --input is a dataset DID the provider knows")
        async with Client(args.server, load_key(args.key_file)) as client:
            return await _job(client, args, algorithm, args.input, args.env, console)
    if args.env:
        raise ConfigError("--env picks a provider's environment: use it with --server")
    # Hashing a large input takes a while: off the loop, like every other file read.
    datasets = [await asyncio.to_thread(_local_dataset, i) for i in args.input]
    for did, source in datasets:
        console.phase(f"input {did}  ← {source}")
    async with _local_engine(args, datasets) as url, Client(url, Key.random()) as client:
        return await _job(client, args, algorithm, [did for did, _ in datasets], None, console)


def _local_dataset(given: str) -> tuple[str, str]:
    """A DID for a local file (from its contents) or a URL (from itself): stable per input."""
    if given.startswith(("http://", "https://")):
        return "did:op:" + hashlib.sha256(given.encode()).hexdigest(), given
    path = Path(given).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"--input {given}: no such file")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return "did:op:" + digest.hexdigest(), str(path)


@contextlib.asynccontextmanager
async def _local_engine(
    args: argparse.Namespace, datasets: list[tuple[str, str]]
) -> AsyncIterator[str]:
    """An engine served on 127.0.0.1 (port 0) for this command only; yields its URL.

    Its data folder is --data-dir (kept), else a folder of its own under the user's
    cache dir, removed at the end: two runs at once never share an engine.
    """
    from localcompute.core.settings import parse_settings
    from localcompute.web.serving import serving

    if not datasets:
        raise ConfigError("give at least one --input (a file or a URL)")
    own = args.data_dir is None
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="run-", dir=_cache_dir()))
    files = {did: source for did, source in datasets}
    roots = sorted({str(Path(s).parent) for s in files.values() if not s.startswith("http")})
    config: dict[str, Any] = {
        "server": {
            "host": "127.0.0.1",
            "port": 0,
            "data_dir": str(data_dir),
            "max_body_bytes": 64 * 1024 * 1024,  # the algorithm travels as raw code
        },
        "environments": [
            {
                "id": "local",
                "cpu": args.cpu or 1.0,
                "ram_gb": args.ram_gb or 2.0,
                "gpus": args.gpus or 0,
                "max_jobs": 1,
                "max_job_duration": args.max_time or 3600,
                "algorithm_network": args.network,
            }
        ],
        "provider": {"dataset_roots": roots},
        "datasets": [{"did": did, "files": [source]} for did, source in files.items()],
    }
    settings = parse_settings(config, "localcompute run")
    try:
        async with serving(settings) as url:
            yield url
    finally:
        if own:
            from localcompute.runtime.disk import release_all

            await asyncio.to_thread(release_all, data_dir / "jobs")
            await asyncio.to_thread(shutil.rmtree, data_dir, True)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    folder = Path(base) / "localcompute"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def _job(
    client: Client,
    args: argparse.Namespace,
    algorithm: Algorithm,
    dids: list[str],
    environment: str | None,
    console: Console,
) -> int:
    job = await client.start(
        dids,
        rawcode=algorithm.rawcode,
        image=algorithm.image,
        tag=algorithm.tag,
        entrypoint=algorithm.entrypoint,
        environment=environment,
        algocustomdata=algorithm.custom_data,
    )
    console.phase(f"job {job.job_id} in {job.environment} ({algorithm.image}:{algorithm.tag})")
    stopping = _on_interrupt(client, job.job_id, console)
    follower: asyncio.Task[None] | None = None

    def on_status(seen: RemoteJob) -> None:
        nonlocal follower
        if seen.status in PHASES:
            console.phase(PHASES[seen.status])
        if seen.status == 40 and follower is None:
            follower = asyncio.create_task(_follow(client, job.job_id, console))

    try:
        done = await client.wait(job.job_id, on_status=on_status, poll=0.1)
        if follower is not None:
            await follower
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
    code = exit_code(done, stopped=stopping.is_set())
    console.phase(f"{'finished' if done.status == 70 else 'failed'}: {describe(done)}")
    out = args.out or Path("results") / done.job_id
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    for result in done.results:
        path = await client.download(done.job_id, result.filename, out)
        console.out.write(f"  {human_size(result.filesize):>9}  {path}\n")
    if args.json:
        print(json.dumps(done.raw, indent=2))
    return code


async def _follow(client: Client, job_id: str, console: Console) -> None:
    """The algorithm's output as it is printed; a broken stream only ends the following."""
    with contextlib.suppress(RemoteError, OSError):
        async for line in client.logs(job_id):
            console.line(line)


def _on_interrupt(client: Client, job_id: str, console: Console) -> asyncio.Event:
    """Ctrl-C stops the job (its logs are still collected); a second one aborts."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[RemoteJob]] = set()

    def interrupted() -> None:
        if stopping.is_set():
            raise KeyboardInterrupt
        stopping.set()
        console.phase("stopping the job (Ctrl-C again to leave it running)")
        task = loop.create_task(client.stop(job_id))
        tasks.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGINT, interrupted)
    return stopping


def exit_code(job: RemoteJob, *, stopped: bool = False) -> int:
    """The algorithm's own exit code when it ran to its end; else a code that says why."""
    if job.status == 31:
        return EXIT_DATA_FAILED
    if job.status == 32:
        return EXIT_ALGORITHM_FAILED
    reason = job.termination_reason
    if reason == "stopped" or stopped:
        return EXIT_STOPPED
    if reason == "timeout":
        return EXIT_TIMEOUT
    if reason == "oom":
        return EXIT_OOM
    if reason == "error":
        return EXIT_SYSTEM
    return job.exit_code or 0


def describe(job: RemoteJob) -> str:
    """One line that names the cause."""
    reason = job.termination_reason
    if job.status in (31, 32):
        return job.reason
    if reason in ("completed", "failed"):
        return f"the algorithm exited with code {job.exit_code}"
    return job.reason
