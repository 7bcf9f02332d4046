"""What bounds one connection, so that a client that never finishes a request holds no
more than its share of the server's files: a deadline for a request's line and headers, a
cap on the connections one client IP holds open, and the open-file limit raised at start.

aiohttp has no header-read timeout: a connection that sent half a request line waits
until its keep-alive timer, and nothing limits how many one address opens. So a single
client holding ~1,000 half-open requests used up a 1,024-file limit and every other
client was refused. `ConnectionGuard` wraps aiohttp's protocol, one `_Guarded` per
connection, and `GuardedSite` listens with it.

The header deadline runs only while a request's headers are awaited: from the connection's
start, and on a keep-alive connection from the first byte of the next request (the idle
time between requests is aiohttp's `keepalive_timeout`, as nginx keeps
`client_header_timeout` and `keepalive_timeout` apart). Once the headers are parsed (the
request reaches the handler) no deadline of ours applies: a log streamed for minutes is
never cut.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import resource
from collections.abc import Awaitable, Callable
from typing import cast

from aiohttp import web

from localcompute.core.limit_settings import ConnectionSettings

log = logging.getLogger("localcompute")

_Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

# One warning per address and minute while it is refused: an abuser is refused a
# thousand times a second, and the log is for people.
_WARN_EVERY = 60.0


class _Phase(enum.Enum):
    HEADERS = "awaiting a request's line and headers"  # the deadline runs
    REQUEST = "in a request"  # headers parsed: the handler runs, the response is written
    IDLE = "idle between requests"  # aiohttp's keep-alive timer runs


class ConnectionGuard:
    """Per-IP connection counts and the header deadline of every connection it admits.

    `refused` and `timed_out` count what it cut off since it was made."""

    def __init__(
        self, settings: ConnectionSettings, on_cut: Callable[[str], None] = lambda limit: None
    ) -> None:
        self.settings = settings
        # Told the setting's name of each connection cut off (for /metrics' refusals).
        self.on_cut = on_cut
        self.refused = 0
        self.timed_out = 0
        self._per_ip: dict[str, int] = {}
        self._warned_at: dict[str, float] = {}
        self._by_handler: dict[web.RequestHandler, _Guarded] = {}
        self._watched: set[int] = set()

    def __repr__(self) -> str:
        return (
            f"ConnectionGuard({sum(self._per_ip.values())} open from {len(self._per_ip)} "
            f"addresses, {self.refused} refused, {self.timed_out} timed out)"
        )

    def protocol_factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        """What `loop.create_server` calls for each accepted connection."""
        self._watch(server)
        return lambda: _Guarded(self, server)

    def _watch(self, server: web.Server) -> None:
        """Learns when a request's headers are parsed and when its handler returns, by
        wrapping the server's request handler. aiohttp has no hook for either; the
        handler is called right after the parser gives a complete message, and each
        RequestHandler copies `server.request_handler` when it is made, so this has to
        happen before the first connection."""
        if id(server) in self._watched:
            return
        self._watched.add(id(server))
        handle: _Handler = server.request_handler
        by_handler = self._by_handler

        async def guarded(request: web.BaseRequest) -> web.StreamResponse:
            connection = by_handler.get(request.protocol)
            if connection is not None:
                connection.headers_read()
            try:
                return await handle(request)
            finally:
                if connection is not None:
                    connection.answered()

        server.request_handler = guarded

    def admit(self, ip: str) -> bool:
        count = self._per_ip.get(ip, 0)
        if count >= self.settings.max_connections_per_ip:
            self.refused += 1
            self.on_cut("max_connections_per_ip")
            now = asyncio.get_running_loop().time()
            if now - self._warned_at.get(ip, -_WARN_EVERY) >= _WARN_EVERY:
                self._warned_at[ip] = now
                log.warning(
                    "%s holds %d connections, the most one address may "
                    "([connections] max_connections_per_ip): further ones are closed",
                    ip,
                    count,
                )
            return False
        self._per_ip[ip] = count + 1
        return True

    def opened(self, connection: _Guarded, handler: web.RequestHandler) -> None:
        self._by_handler[handler] = connection

    def closed(self, ip: str, handler: web.RequestHandler) -> None:
        self._by_handler.pop(handler, None)
        count = self._per_ip.get(ip, 0) - 1
        if count > 0:
            self._per_ip[ip] = count
        else:
            self._per_ip.pop(ip, None)
            self._warned_at.pop(ip, None)

    def refusal(self, ip: str) -> bytes:
        """A complete response written in place of reading any request."""
        cap = self.settings.max_connections_per_ip
        body = json.dumps(
            {"error": f"too many connections from {ip}: at most {cap} open at once"}
        ).encode()
        head = (
            "HTTP/1.1 429 Too Many Requests\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Retry-After: 1\r\n"
            "Connection: close\r\n\r\n"
        )
        return head.encode() + body


class _Guarded(asyncio.Protocol):
    """One connection: the guard's bookkeeping around aiohttp's own protocol, which is
    made only once the connection is admitted (a refused one costs no parser)."""

    def __init__(self, guard: ConnectionGuard, server: web.Server) -> None:
        self._guard = guard
        self._server = server
        self._inner: web.RequestHandler | None = None
        self._transport: asyncio.Transport | None = None
        self._ip = ""
        self._phase = _Phase.HEADERS
        self._deadline: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<connection from {self._ip or '?'}, {self._phase.value}>"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though uvloop's (what `localcompute serve` runs) is no
        # subclass of asyncio.Transport.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self._guard.admit(ip):
            # Closed at once, the request unread: waiting for it would hold the very
            # file this refusal is there to free.
            transport.write(self._guard.refusal(ip))
            transport.close()
            return
        self._ip = ip
        self._inner = self._server()
        self._guard.opened(self, self._inner)
        self._arm()
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        inner, self._inner = self._inner, None
        self._transport = None
        if inner is not None:
            self._guard.closed(self._ip, inner)
            inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if self._phase is _Phase.IDLE:
            # The first byte of the next request on a keep-alive connection: its
            # headers are due within header_timeout from here.
            self._phase = _Phase.HEADERS
            self._arm()
        self._inner.data_received(data)

    def eof_received(self) -> None:
        # aiohttp keeps no half-closed connection: returning None lets the transport close.
        if self._inner is not None:
            self._inner.eof_received()

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def headers_read(self) -> None:
        self._phase = _Phase.REQUEST
        self._disarm()

    def answered(self) -> None:
        self._phase = _Phase.IDLE

    def _arm(self) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._guard.settings.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        transport = self._transport
        if self._phase is not _Phase.HEADERS or transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size():
            # A pipelined request waits behind a response still being written to a
            # slow reader: that is the server's time, not the client's.
            self._arm()
            return
        self._guard.timed_out += 1
        self._guard.on_cut("header_timeout")
        log.debug("%s sent no complete request headers in time: closed", self._ip)
        transport.close()


class GuardedSite(web.BaseSite):
    """A TCP site (host and port, as `web.TCPSite`) whose connections `guard` admits."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard
    ) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._guard = guard

    @property
    def name(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host or "0.0.0.0"
        return f"http://{host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.protocol_factory(server), self._host, self._port, backlog=self._backlog
        )


def raise_file_limit(wanted: int) -> None:
    """Raises this process's soft open-file limit to `wanted`, or to the hard limit where
    that is lower; 0 leaves it. Each connection is a file: the usual 1,024 is a few
    hundred clients once the store, the job logs and Docker's sockets have theirs."""
    if wanted == 0:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as e:
        log.warning("open-file limit stays at %d: cannot raise it to %d (%s)", soft, target, e)
        return
    below = f" (the hard limit; [connections] file_limit is {wanted})" if target < wanted else ""
    log.info("open-file limit raised from %d to %d%s", soft, target, below)
