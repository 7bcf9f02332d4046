"""The engine `localcompute run` serves for itself, without --server.

It is served on 127.0.0.1 (port 0) for this command only, with a data folder of its
own under the user's cache dir (or --data-dir, kept). The job's limits are checked
against this machine first, so that a refusal speaks of the options given, not of
the server's configuration. Whatever the run made goes with the command, however it
ends: a server's engine leaves running containers to be re-attached at its next
start, but this engine has no next start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localcompute.core.errors import ConfigError, LocalComputeError
from localcompute.runtime.local import hostinfo

if TYPE_CHECKING:
    from localcompute.engine import Engine
    from localcompute.runtime import ContainerRuntime

log = logging.getLogger("localcompute")

GIB = 1024**3
# The engine's one environment: named to the client, which need not ask for a free one.
ENVIRONMENT = "local"
DEFAULT_CPU = 1.0
DEFAULT_RAM_GB = 2.0
DEFAULT_MAX_TIME = 3600.0
# --max-time 0 is no limit; an environment always has one, so it is ten years.
NO_TIME_LIMIT = 10 * 365 * 24 * 3600.0
# A container a cancelled step was still creating on a Docker thread can appear after
# the engine closed: the sweep of a run cut short looks until it twice finds none.
SWEEP_PAUSE = 0.2
SWEEP_SECONDS = 10.0


def check_limits(args: argparse.Namespace) -> None:
    """ConfigError, in the options' own terms, for a limit that is not one or that this
    machine cannot give."""
    for option, value in (("--cpu", args.cpu), ("--ram-gb", args.ram_gb)):
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise ConfigError(f"{option} {value:g}: give a number above 0")
    if args.gpus is not None and args.gpus < 0:
        raise ConfigError(f"--gpus {args.gpus}: give 0 or more")
    if args.max_time is not None and not (args.max_time >= 0 and math.isfinite(args.max_time)):
        raise ConfigError(f"--max-time {args.max_time:g}: give seconds, or 0 for no limit")
    cores = len(hostinfo.usable_cores())
    if args.cpu is not None and args.cpu > cores:
        total = os.cpu_count() or cores
        has = f"has {cores} cores" if total == cores else f"lets this command use {cores} cores"
        raise ConfigError(f"--cpu {args.cpu:g}: this machine {has}")
    memory = hostinfo.memory_bytes()
    if args.ram_gb is not None and args.ram_gb * GIB > memory:
        raise ConfigError(
            f"--ram-gb {args.ram_gb:g}: this machine has {memory / GIB:.1f} GiB of memory"
        )
    if args.gpus:
        gpus = len(hostinfo.nvidia_devices())
        if args.gpus > gpus:
            has = "no GPUs" if gpus == 0 else f"{gpus} GPU{'s' if gpus > 1 else ''}"
            raise ConfigError(f"--gpus {args.gpus}: this machine has {has}")


def local_dataset(given: str) -> tuple[str, str]:
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


def _config(args: argparse.Namespace, data_dir: Path, files: dict[str, str]) -> dict[str, Any]:
    roots = sorted({str(Path(s).parent) for s in files.values() if not s.startswith("http")})
    max_time = DEFAULT_MAX_TIME if args.max_time is None else args.max_time
    return {
        "server": {
            "host": "127.0.0.1",
            "port": 0,
            "data_dir": str(data_dir),
            "max_body_bytes": 64 * 1024 * 1024,  # the algorithm travels as raw code
        },
        "environments": [
            {
                "id": ENVIRONMENT,
                "cpu": DEFAULT_CPU if args.cpu is None else args.cpu,
                "ram_gb": DEFAULT_RAM_GB if args.ram_gb is None else args.ram_gb,
                "gpus": args.gpus or 0,
                "max_jobs": 1,
                "max_job_duration": max_time or NO_TIME_LIMIT,
                "algorithm_network": args.network,
            }
        ],
        # Its one client is this command: every result it downloads is a signed read.
        "limits": {"exempt_loopback": True},
        # One key for every local run, kept with the cache: its receipts name one signer.
        "provider": {"dataset_roots": roots, "private_key_file": str(_run_key())},
        "datasets": [{"did": did, "files": [source]} for did, source in files.items()],
    }


@dataclass(frozen=True)
class LocalEngine:
    """The command's own engine and, where it is served (`run --ui`), its URL; else
    "": the command asks the engine itself (local_jobs.py)."""

    engine: Engine
    url: str = ""


@contextlib.asynccontextmanager
async def local_engine(
    args: argparse.Namespace, datasets: list[tuple[str, str]], *, serve: bool
) -> AsyncIterator[LocalEngine]:
    """An engine for this command only; served on 127.0.0.1 when `serve`.

    On the way out, however the command leaves, the engine's containers are removed,
    and its own data folder with the job disks mounted in it.
    """
    with _loading():
        from localcompute.core.config_file import parse_settings
        from localcompute.engine import Engine
        from localcompute.runtime.choice import runtime_for
        from localcompute.runtime.local.docker import DockerRuntime

    files = dict(datasets)
    own = args.data_dir is None
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="run-", dir=_cache_dir()))
    instance: str | None = None
    # The clean-up's own Docker client, opened while the job runs: not after it.
    sweeper = DockerRuntime()
    opening: asyncio.Future[None] | None = None
    cut_short = True
    try:
        settings = parse_settings(_config(args, data_dir, files), "localcompute run")
        engine = Engine(settings, runtime=runtime_for(settings))
        if serve:
            with _loading():  # aiohttp's server: only for the page
                from localcompute.web.serving import serving
            # Its one client leaves first: a live log it followed must not hold the server.
            async with serving(settings, engine=engine, handler_cancellation=True) as url:
                instance = engine.instance
                opening = asyncio.ensure_future(sweeper.open())
                yield LocalEngine(engine, url)
        else:
            await engine.start()  # its catalog, data folder, key, store and Docker
            try:
                instance = engine.instance
                opening = asyncio.ensure_future(sweeper.open())
                yield LocalEngine(engine)
            finally:
                await engine.close()
        cut_short = False
    finally:
        # To its end, even when a signal cancels the command meanwhile (it says so after).
        cleaning = asyncio.ensure_future(
            _clean_up(instance, sweeper, opening, data_dir if own else None, cut_short)
        )
        try:
            await asyncio.shield(cleaning)
        except asyncio.CancelledError:
            await asyncio.wait({cleaning})
            raise


@contextlib.contextmanager
def _loading() -> Iterator[None]:
    """No garbage collection while the engine's modules load, as while the CLI's do:
    they make tens of thousands of objects, nearly none garbage. In the command's own
    process (localcompute.__main__ froze the CLI's) they are frozen out of later passes
    too; a process that only calls the CLI (a test) keeps its collector as it was."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count():
            gc.freeze()
        gc.enable()


async def _clean_up(
    instance: str | None,
    sweeper: ContainerRuntime,
    opening: asyncio.Future[None] | None,
    own_dir: Path | None,
    cut_short: bool,
) -> None:
    """The engine's containers, then the job disks mounted in its own folder, then that."""
    try:
        if instance is not None and opening is not None:
            await _remove_containers(instance, sweeper, opening, cut_short=cut_short)
    finally:
        await sweeper.close()
    if own_dir is not None:
        from localcompute.runtime.local.disk import release_all

        await asyncio.to_thread(release_all, own_dir / "jobs")
        await asyncio.to_thread(shutil.rmtree, own_dir, True)


async def _remove_containers(
    instance: str, runtime: ContainerRuntime, opening: asyncio.Future[None], *, cut_short: bool
) -> None:
    """Every container of the run's engine: none after a job that ran to its end, its
    job's own when the command left mid-way."""
    try:
        await opening
        found_none = 0
        deadline = time.monotonic() + SWEEP_SECONDS
        while True:
            left = await runtime.list_labelled(instance)
            for container in left:
                await runtime.remove(container.name)
            found_none = 0 if left else found_none + 1
            if found_none >= (2 if cut_short else 1) or time.monotonic() > deadline:
                return
            await asyncio.sleep(SWEEP_PAUSE)
    except LocalComputeError as e:
        log.warning("could not remove the containers of this run (instance %s): %s", instance, e)


def _run_key() -> Path:
    """The key that signs the receipts of local runs: made once, mode 0600."""
    from localcompute.core.signing import secret_file

    path = _cache_dir() / "run.key"
    secret_file(path, "the key of local runs")
    return path


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    folder = Path(base) / "localcompute"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
