"""`localcompute run`: an algorithm on local files, as Ocean would run it, in one command.

Without --server it runs an engine inside the command (a data folder of its own) and
asks it directly (local_jobs.py), in the terms it uses with a remote provider through
localcompute.client: the same job spec, from the same catalog checks, the same status
objects and results; only --ui serves the engine (port 0 on 127.0.0.1), for the page.
The algorithm sees Ocean's layout and variables, so what runs here runs on Ocean.

Ctrl-C stops the job and still collects its logs and results (exit 130); a second
Ctrl-C, or SIGTERM, leaves at once. However the command ends, nothing of a local run
is left behind: its containers, job disks and engine folder go with it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from localcompute.cli import reproduce
from localcompute.cli.display import human_size
from localcompute.cli.interrupts import Interrupts
from localcompute.cli.page import open_page, page_url
from localcompute.cli.run_image import Container, Images, choose
from localcompute.cli.run_image import given as given_container
from localcompute.cli.run_local import (
    ENVIRONMENT,
    LocalEngine,
    check_limits,
    local_dataset,
    local_engine,
)
from localcompute.cli.run_outcome import (
    describe,
    exit_code,
    json_status,
)
from localcompute.client.models import RemoteJob
from localcompute.core.errors import (
    ConfigError,
    RemoteError,
)

if TYPE_CHECKING:
    from localcompute.cli.local_jobs import JobClient

T = TypeVar("T")

# How long a run --server that is leaving waits for the provider to take its stop.
REMOTE_STOP_SECONDS = 5.0

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


def add_parser(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="run an algorithm on local files or URLs, as Ocean would, and fetch its results",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("algorithm", type=Path, help="the algorithm's file (its code is sent raw)")
    run.add_argument(
        "--image",
        help="its image, or IMAGE:TAG (default by extension: .py → python:3.12-slim, .sh → "
        "busybox, .js → node:20-slim; where that cannot be pulled, the image setup made)",
    )
    run.add_argument("--tag", help="the image's tag (default: the extension's, else latest)")
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
    run.add_argument(
        "--cpu", type=float, help="CPUs for the job, above 0 (without --server; default 1)"
    )
    run.add_argument(
        "--ram-gb", type=float, help="memory in GiB, above 0 (without --server; default 2)"
    )
    run.add_argument("--gpus", type=int, help="GPUs (without --server; default 0)")
    run.add_argument(
        "--max-time",
        type=float,
        metavar="SECONDS",
        help="how long the algorithm may run; 0: no limit (without --server; default 3600)",
    )
    run.add_argument("--network", action="store_true", help="give the algorithm a network")
    run.add_argument("--out", type=Path, help="where results go (default ./results/<jobId>/)")
    run.add_argument("--server", help="a running provider's URL instead of a local engine")
    run.add_argument("--key-file", type=Path, help="the consumer key (with --server)")
    run.add_argument("--data-dir", type=Path, help="the local engine's folder (kept)")
    run.add_argument(
        "--reproduce",
        type=Path,
        metavar="RECEIPT",
        help="run a receipt's job again (its image, limits, algorithm and input files, "
        "checked) and compare every output's sha256; exit 0 when all are identical",
    )
    run.add_argument(
        "--ui",
        action="store_true",
        help="print the job's page on the dashboard and open it in a browser; a local "
        "run keeps it up after the job, until Ctrl-C",
    )
    run.add_argument(
        "--json",
        action="store_true",
        help="print only the final status object, each result with its local path",
    )


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
    return asyncio.run(_main(args))


async def _main(args: argparse.Namespace) -> int:
    """The run, with the signals that end it answered from its first await to its last."""
    console = Console(sys.stderr if args.json else sys.stdout)
    leaving = "the provider stops the job" if args.server else "removing its container and folder"
    with Interrupts(console.phase, leaving) as interrupts:
        try:
            return await _run(args, console, interrupts)
        except asyncio.CancelledError:
            if interrupts.left_by is None:
                raise
            return interrupts.exit_code


@dataclass(frozen=True)
class Algorithm:
    rawcode: str
    custom_data: Any


def _algorithm(args: argparse.Namespace) -> Algorithm:
    try:
        rawcode = args.algorithm.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the algorithm {args.algorithm}: {e}") from e
    if args.reproduce is None:  # a file with no default container fails before anything runs
        given_container(args)
    custom = None
    if args.custom_data is not None:
        try:
            custom = json.loads(args.custom_data.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ConfigError(f"--custom-data {args.custom_data}: {e}") from e
    return Algorithm(rawcode, custom)


async def _container(args: argparse.Namespace, images: Images | None) -> Container:
    choice = await choose(args, images)
    if choice.note is not None:
        print(f"localcompute run: {choice.note}", file=sys.stderr, flush=True)
    return choice.container


async def _local_container(args: argparse.Namespace) -> Container:
    """The container named, else the extension's default or its stand-in: Docker says."""
    named = given_container(args)
    if named is not None:
        return named
    return await _with_images(lambda images: _container(args, images))


async def _run(args: argparse.Namespace, console: Console, interrupts: Interrupts) -> int:
    again = None if args.reproduce is None else await asyncio.to_thread(reproduce.prepare, args)
    algorithm = _algorithm(args)
    if args.server:
        if any(v is not None for v in (args.cpu, args.ram_gb, args.gpus, args.max_time)):
            raise ConfigError("--cpu, --ram-gb, --gpus and --max-time are local: use --env")
        if not args.input or not all(i.startswith("did:") for i in args.input):
            raise ConfigError("with --server, every --input is a dataset DID the provider knows")
        container = await _container(args, None)  # the provider's images are its own
        from localcompute.client import Client, load_key  # aiohttp: for the provider only

        async with Client(args.server, load_key(args.key_file)) as client:
            return await _job(
                client, args, algorithm, container, args.input, args.env, console, interrupts
            )
    if args.env:
        raise ConfigError("--env picks a provider's environment: use it with --server")
    check_limits(args)
    # Hashing a large input takes a while: off the loop, like every other file read.
    datasets = [await asyncio.to_thread(local_dataset, i) for i in args.input]
    if not datasets:
        raise ConfigError("give at least one --input (a file or a URL)")
    if again is not None:
        await _with_images(again.check_image)
        console.phase(f"reproducing {args.reproduce}: {again.checked}")
    container = await _local_container(args) if again is None else again.container
    for did, source in datasets:
        console.phase(f"input {did}  ← {source}")
    async with local_engine(args, datasets, serve=args.ui) as local:
        dids = [did for did, _ in datasets]
        ended: list[tuple[RemoteJob, dict[str, Path]]] = []
        async with _local_client(local) as client:
            code = await _job(
                client, args, algorithm, container, dids, ENVIRONMENT, console, interrupts, ended
            )
        if args.ui:
            page = page_url(local.url, ended[0][0].job_id)
            console.phase(f"the job's page stays up at {page}")
            console.phase("Ctrl-C to leave")
            await interrupts.linger()
    if again is None:
        return code
    code, line = await asyncio.to_thread(again.compare, *ended[0], code)
    print(line, flush=True)
    return code


def _local_client(local: LocalEngine) -> JobClient:
    """The engine itself, in this process; through HTTP only where it is served (--ui),
    so that the page and the command see the same server."""
    if not local.url:
        from localcompute.cli.local_jobs import LocalJobs  # the engine's own: with it

        return LocalJobs(local.engine)
    from localcompute.client import Client, Key  # aiohttp: only for a served engine

    return Client(local.url, Key.random())


async def _with_images(use: Callable[[Images], Awaitable[T]]) -> T:
    """`use` with this host's Docker engine, to look at its images."""
    from localcompute.runtime.local.docker import DockerRuntime

    runtime = DockerRuntime(short_workers=1, long_workers=1)
    await runtime.open()
    try:
        return await use(runtime)
    finally:
        await runtime.close()


async def _job(
    client: JobClient,
    args: argparse.Namespace,
    algorithm: Algorithm,
    container: Container,
    dids: list[str],
    environment: str | None,
    console: Console,
    interrupts: Interrupts,
    ended: list[tuple[RemoteJob, dict[str, Path]]] | None = None,
) -> int:
    job = await client.start(
        dids,
        rawcode=algorithm.rawcode,
        image=container.image,
        tag=container.tag,
        entrypoint=container.entrypoint,
        environment=environment,
        algocustomdata=algorithm.custom_data,
    )
    console.phase(f"job {job.job_id} in {job.environment} ({container.ref})")
    await _show_page(client, args, job.job_id, console)
    stops: set[asyncio.Task[RemoteJob]] = set()

    def settled(task: asyncio.Task[RemoteJob]) -> None:
        stops.discard(task)
        if not task.cancelled():
            task.exception()  # a stop that failed: the wait that follows says how the job ended

    def stop() -> str:
        task = asyncio.create_task(client.stop(job.job_id))
        stops.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(settled)
        return "stopping the job; its logs are still collected (Ctrl-C again to leave now)"

    follower: asyncio.Task[None] | None = None

    def on_status(seen: RemoteJob) -> None:
        nonlocal follower
        if seen.status in PHASES:
            console.phase(PHASES[seen.status])
        if seen.status == 40 and follower is None:
            follower = asyncio.create_task(_follow(client, job.job_id, console))

    interrupts.job_started(stop)
    try:
        done = await client.wait(job.job_id, on_status=on_status, poll=0.1)
        if follower is not None:
            await follower
    except asyncio.CancelledError:
        if follower is not None:
            follower.cancel()
        await _leaving(
            client, job.job_id, stops, remote=bool(args.server), asked=interrupts.stopping
        )
        raise
    finally:
        interrupts.job_ended()
    code = exit_code(done, stopped=interrupts.stopping)
    console.phase(f"{'finished' if done.status == 70 else 'failed'}: {describe(done)}")
    paths = await _download(client, done, args.out or Path("results") / done.job_id, console)
    if args.json:
        print(json.dumps(json_status(done.raw, paths, local=not args.server), indent=2))
    if ended is not None:
        ended.append((done, paths))  # the job and its files, for --reproduce to compare
    return code


async def _show_page(
    client: JobClient, args: argparse.Namespace, job_id: str, console: Console
) -> None:
    """With --ui: the job's page, printed and opened."""
    if not args.ui:
        return
    page = page_url(client.url, job_id)
    where = " (the provider's dashboard: its operator's networks only)" if args.server else ""
    console.phase(f"page: {page}{where}")
    await asyncio.to_thread(open_page, page)


async def _download(
    client: JobClient, done: RemoteJob, out: Path, console: Console
) -> dict[str, Path]:
    """Every result of the job into `out`: each file's name, and where it is now."""
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for result in done.results:
        path = await client.download(done.job_id, result.filename, out, job=done)
        paths[result.filename] = path
        console.out.write(f"  {human_size(result.filesize):>9}  {path}\n")
    return paths


async def _leaving(
    client: JobClient,
    job_id: str,
    stops: set[asyncio.Task[RemoteJob]],
    *,
    remote: bool,
    asked: bool,
) -> None:
    """The command leaves before the job ended: a provider's job must not run on unseen,
    and no stop may be left in flight on a client about to close."""
    if remote and stops:  # a stop on its way to the provider gets there first
        await asyncio.wait(stops, timeout=REMOTE_STOP_SECONDS)
    for task in list(stops):
        task.cancel()  # a local run's engine goes with the command: no stop is needed
    if remote and not asked:
        with contextlib.suppress(RemoteError, OSError, TimeoutError):
            await asyncio.wait_for(client.stop(job_id), REMOTE_STOP_SECONDS)


async def _follow(client: JobClient, job_id: str, console: Console) -> None:
    """The algorithm's output as it is printed; a broken stream only ends the following."""
    with contextlib.suppress(RemoteError, OSError):
        async for line in client.logs(job_id):
            console.line(line)
