"""[connections] on a real port: a request's headers are due within header_timeout, an idle
keep-alive connection closes after keepalive_timeout, one client IP holds at most
max_connections_per_ip connections, and a response that takes long is never cut.

The raw sockets here are what an abuser sends: a request line and one header, then
silence. Linux loopback answers all of 127/8, so 127.0.0.2 is "another client".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
import uvloop
from yarl import URL

from localcompute.core.config_file import load_settings
from localcompute.engine import Engine
from localcompute.testing import FakeRuntime
from localcompute.web.serving import serving
from tests.conftest import serving_files
from tests.node_client import NodeClient, raw_algorithm
from tests.served import write_config

pytestmark = pytest.mark.asyncio(loop_scope="module")

HEADER_TIMEOUT = 0.3
KEEPALIVE_TIMEOUT = 0.9  # apart from HEADER_TIMEOUT, to tell which one closed a connection
CAP = 20
CONNECTIONS = f"""
[connections]
header_timeout = {HEADER_TIMEOUT}
keepalive_timeout = {KEEPALIVE_TIMEOUT}
max_connections_per_ip = {CAP}
file_limit = 0
"""
HALF_A_REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n"
A_REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


class Server:
    def __init__(self, url: str, dataset_url: str) -> None:
        self.url = url
        address = URL(url)
        self.host, self.port = str(address.host), int(address.port or 80)
        self.dataset = [{"fileObject": {"type": "url", "url": dataset_url, "method": "GET"}}]


@contextlib.asynccontextmanager
async def guarded_server(root: Path) -> AsyncIterator[Server]:
    """`localcompute serve`'s server (over a FakeRuntime) with CONNECTIONS."""
    async with serving_files() as files:
        dataset_url = files.add("data.csv", "a dataset\n")
        settings = load_settings(write_config(root, 0, dataset_url, extra=CONNECTIONS))
        engine = Engine(settings, runtime=FakeRuntime())
        async with serving(settings, engine=engine) as url:
            yield Server(url, dataset_url)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    async with guarded_server(tmp_path_factory.mktemp("connections")) as served:
        yield served


@contextlib.asynccontextmanager
async def connections() -> AsyncIterator[list[asyncio.StreamWriter]]:
    """Writers put in the list are closed when the block ends, whatever happened."""
    writers: list[asyncio.StreamWriter] = []
    try:
        yield writers
    finally:
        for writer in writers:
            writer.close()
        for writer in writers:
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def connect(
    server: Server, held: list[asyncio.StreamWriter], source: str = "127.0.0.1"
) -> asyncio.StreamReader:
    reader, writer = await asyncio.open_connection(server.host, server.port, local_addr=(source, 0))
    held.append(writer)
    return reader


async def seconds_until_closed(reader: asyncio.StreamReader, limit: float = 5) -> float:
    """How long the server keeps the connection open from now; anything it sends is read."""
    started = time.monotonic()
    with contextlib.suppress(ConnectionError):
        while await asyncio.wait_for(reader.read(65536), limit):
            pass
    return time.monotonic() - started


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status, *lines = head.decode().rstrip("\r\n").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    headers = {name.lower(): value for name, value in headers.items()}
    body = await reader.readexactly(int(headers["content-length"]))
    return status.encode(), headers, body


async def answered_from(server: Server, source: str, count: int) -> list[int]:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> int:
            async with session.get(server.url + "/") as r:
                await r.read()
                return r.status

        return list(await asyncio.gather(*(one() for _ in range(count))))


async def test_half_open_requests_are_closed_after_the_header_timeout(server: Server) -> None:
    async with connections() as held:
        half_open = await connect(server, held)
        held[-1].write(HALF_A_REQUEST)
        silent = await connect(server, held)  # not even a request line
        waited = await asyncio.gather(seconds_until_closed(half_open), seconds_until_closed(silent))
    # Closed by the header deadline, well before the idle keep-alive time would close them.
    for seconds in waited:
        assert HEADER_TIMEOUT - 0.05 < seconds < KEEPALIVE_TIMEOUT - 0.1, waited


async def test_connections_over_the_cap_are_refused_and_other_addresses_answered(
    server: Server,
) -> None:
    async with connections() as held:
        readers = []
        for _ in range(10 * CAP):
            readers.append(await connect(server, held))
            held[-1].write(HALF_A_REQUEST)
        # Well within the header deadline: the first CAP are held, the rest refused.
        assert await answered_from(server, "127.0.0.2", CAP) == [200] * CAP
        assert await answered_from(server, "127.0.0.1", 1) == [429]
        status, headers, body = await read_response(readers[CAP])
        assert status == b"HTTP/1.1 429 Too Many Requests"
        assert headers["connection"] == "close"
        assert headers["content-type"] == "application/json"
        assert json.loads(body) == {
            "error": f"too many connections from 127.0.0.1: at most {CAP} open at once"
        }
        refused = await asyncio.gather(*(seconds_until_closed(r, 1) for r in readers[CAP:]))
        assert max(refused) < HEADER_TIMEOUT, "a refused connection was held"
        # The held ones are the header deadline's.
        held_open = await asyncio.gather(*(seconds_until_closed(r) for r in readers[:CAP]))
        assert max(held_open) < KEEPALIVE_TIMEOUT
    # Their places are free again.
    assert await answered_from(server, "127.0.0.1", 1) == [200]
    # Each connection cut off is counted in /metrics, by the setting that cut it.
    async with aiohttp.ClientSession() as session, session.get(server.url + "/metrics") as r:
        metrics = await r.text()
    for limit in ("max_connections_per_ip", "header_timeout"):
        [line] = [m for m in metrics.splitlines() if f'refusals_total{{limit="{limit}"}}' in m]
        assert float(line.split()[-1]) >= CAP, line


async def test_idle_keep_alive_connections_close_after_keepalive_timeout(server: Server) -> None:
    async def idle_after_a_response() -> float:
        reader = await connect(server, held)
        held[-1].write(A_REQUEST)
        status, headers, _ = await read_response(reader)
        assert (status, headers.get("connection", "keep-alive")) == (
            b"HTTP/1.1 200 OK",
            "keep-alive",
        )
        return await seconds_until_closed(reader)

    async def half_a_second_request() -> float:
        """On a kept-alive connection the header deadline runs from the next request's
        first byte (the idle time before it is keepalive_timeout's, as above)."""
        reader = await connect(server, held)
        held[-1].write(A_REQUEST)
        await read_response(reader)
        await asyncio.sleep(0.1)
        held[-1].write(HALF_A_REQUEST)
        return await seconds_until_closed(reader)

    async with connections() as held:
        idle, slow = await asyncio.gather(idle_after_a_response(), half_a_second_request())
    assert KEEPALIVE_TIMEOUT - 0.1 < idle < KEEPALIVE_TIMEOUT + 1
    # aiohttp alone would close it with the idle connection, 0.8 s after that byte.
    assert HEADER_TIMEOUT - 0.05 < slow < KEEPALIVE_TIMEOUT - 0.3


async def test_a_streamed_log_is_not_cut_by_the_header_timeout(server: Server) -> None:
    async with aiohttp.ClientSession() as session:
        client = NodeClient(session, server.url)
        pause = 2 * HEADER_TIMEOUT
        code, [job] = await client.start(
            raw_algorithm(f"echo one; sleep {pause}; echo two"), server.dataset
        )
        assert code == 200
        await client.wait(job["jobId"], running=True)
        params = {**await client.signed("getComputeStreamableLogs"), "jobId": job["jobId"]}
        started = time.monotonic()
        async with session.get(
            client.url("/api/services/computeStreamableLogs"), params=params
        ) as r:
            assert r.status == 200
            assert await r.content.read() == b"one\ntwo\n"
        assert time.monotonic() - started > HEADER_TIMEOUT
        assert (await client.wait(job["jobId"]))["status"] == 70


async def test_uvloop_as_localcompute_serve_runs_it(tmp_path: Path) -> None:
    """`localcompute serve` runs on uvloop, whose transports are not asyncio's: the guard
    must cap and cut off there too (the tests above run on asyncio's loop)."""

    async def over_the_cap_and_half_open() -> tuple[bytes, list[int], float]:
        async with guarded_server(tmp_path) as server, connections() as held:
            readers = [await connect(server, held) for _ in range(CAP + 1)]
            for writer in held:
                writer.write(HALF_A_REQUEST)
            status, _, _ = await read_response(readers[-1])
            answered = await answered_from(server, "127.0.0.2", 2)
            return status, answered, await seconds_until_closed(readers[0])

    refused, answered, held_for = await asyncio.to_thread(uvloop.run, over_the_cap_and_half_open())
    assert (refused, answered) == (b"HTTP/1.1 429 Too Many Requests", [200, 200])
    assert held_for < KEEPALIVE_TIMEOUT - 0.1
