"""Serving the app: bound on its host and port, the URL it got made known, and stopped
cleanly. `localcompute serve`, `localcompute run` and the pytest plugin all serve so."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from localcompute.core.settings import Settings
from localcompute.engine import Engine
from localcompute.web.app import create_app
from localcompute.web.context import PUBLIC_URL

URL_FILE = "server.url"


def bound_url(addresses: Sequence[Any]) -> str:
    """http://host:port of the first socket the server listens on (IPv6 in brackets)."""
    host, port = addresses[0][0], addresses[0][1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextlib.asynccontextmanager
async def serving(settings: Settings, *, engine: Engine | None = None) -> AsyncIterator[str]:
    """The server running; yields the URL clients reach it at. Port 0 takes a free port,
    and every URL the server hands out (results, logs) then carries the one it got."""
    app = create_app(settings, engine=engine)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.server.host, settings.server.port).start()
        url = settings.server.public_url.rstrip("/") or bound_url(runner.addresses)
        app[PUBLIC_URL].value = url
        yield url
    finally:
        await runner.cleanup()


async def serve_until_signalled(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM. The URL goes to stdout, one line a parent process
    can read, and to data_dir/server.url for the commands that find a server by its
    data folder (removed again on the way out)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serving(settings) as url:
        url_file = settings.data_dir / URL_FILE
        await asyncio.to_thread(_write, url_file, url + "\n")
        print(f"localcompute listening on {url}", flush=True)
        try:
            await stop.wait()
        finally:
            await asyncio.to_thread(url_file.unlink, missing_ok=True)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
