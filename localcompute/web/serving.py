"""Serving the app: bound on its host and port, the URL it got made known, and stopped
cleanly. `localcompute serve`, `localcompute run` and the pytest plugin all serve so."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from localcompute import __version__
from localcompute.core.errors import ConfigError
from localcompute.core.models import JobQuery
from localcompute.core.settings import Settings
from localcompute.engine import Engine
from localcompute.web.access_log import RedactingAccessLogger
from localcompute.web.app import create_app
from localcompute.web.connections import ConnectionGuard, GuardedSite, raise_file_limit
from localcompute.web.context import ENGINE, PROVIDER_KEY, PUBLIC_URL

log = logging.getLogger("localcompute")

URL_FILE = "server.url"


def bound_url(addresses: Sequence[Any]) -> str:
    """http://host:port of the first socket the server listens on (IPv6 in brackets)."""
    host, port = addresses[0][0], addresses[0][1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, *, engine: Engine | None = None, handler_cancellation: bool = False
) -> AsyncIterator[str]:
    """The server running; yields the URL clients reach it at. Port 0 takes a free port,
    and every URL the server hands out (results, logs) then carries the one it got.

    `handler_cancellation`: a request whose client went away is cancelled, so that a
    server whose only client has left stops at once, not when a log it streamed ends.

    Connections are bounded by [connections] (see `localcompute.web.connections`): a
    header deadline, the idle keep-alive time, a cap per client IP, the file limit.
    """
    limits = settings.connections
    raise_file_limit(limits.file_limit)
    app = create_app(settings, engine=engine)
    runner = web.AppRunner(
        app,
        access_log_class=RedactingAccessLogger,
        handler_cancellation=handler_cancellation,
        keepalive_timeout=limits.keepalive_timeout,
    )
    await runner.setup()
    try:
        host, port = settings.server.host, settings.server.port
        try:
            guard = ConnectionGuard(limits, on_cut=app[ENGINE].metrics.refused)
            await GuardedSite(runner, host, port, guard).start()
        except OSError as e:
            why = "the port is in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
            raise ConfigError(
                f"cannot listen on {host}:{port}: {why} "
                "(set [server] host and port, or serve --host and --port)"
            ) from None
        url = settings.server.public_url.rstrip("/") or bound_url(runner.addresses)
        app[PUBLIC_URL].value = url
        await _log_start(app, settings, url)
        yield url
    finally:
        await runner.cleanup()


async def _log_start(app: web.Application, settings: Settings, url: str) -> None:
    """One block that says what this server is: version, data, key, environments, jobs."""
    address = app[PROVIDER_KEY].address
    unfinished = await app[ENGINE].find(JobQuery(unfinished=True))
    lines = [
        f"localcompute {__version__} at {url}",
        f"  data_dir     {settings.data_dir}",
        f"  provider     {address} on chains {', '.join(map(str, settings.provider.chain_ids))}",
        f"  node dialect {url}{settings.node.prefix}",
    ]
    for env in settings.environments:
        gpus = f", {env.gpu_count} GPU" if env.gpu_count else ""
        lines.append(
            f"  environment  {env.id}: {env.max_jobs} at once, {env.cpu:g} CPU, "
            f"{env.ram_gb:g} GiB{gpus}, {env.max_job_duration:g} s, "
            f"network {'on' if env.algorithm_network else 'off'}"
        )
    lines.append(f"  jobs         {len(unfinished)} unfinished, resumed from where they were")
    log.info("\n".join(lines))


async def serve_until_signalled(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM. The URL goes to stdout, one line a parent process
    can read, and to data_dir/server.url for the commands that find a server by its
    data folder (removed again on the way out)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _stopping, sig, stop)
    loop.add_signal_handler(signal.SIGHUP, _hangup)
    async with serving(settings) as url:
        url_file = settings.data_dir / URL_FILE
        await asyncio.to_thread(_write, url_file, url + "\n")
        print(f"localcompute listening on {url}", flush=True)
        try:
            await stop.wait()
        finally:
            await asyncio.to_thread(url_file.unlink, missing_ok=True)


def _stopping(sig: signal.Signals, stop: asyncio.Event) -> None:
    log.info(
        "%s: stopping; running algorithms go on and are re-attached at the next start", sig.name
    )
    stop.set()


def _hangup() -> None:
    log.warning(
        "SIGHUP: the configuration is not reloaded while running; restart the server to "
        "apply changes (running jobs are re-attached, none is lost)"
    )


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
