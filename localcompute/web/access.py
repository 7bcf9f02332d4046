"""Who may read what is the operator's, not a consumer's: /metrics and the dashboard.

Only the addresses in [server] metrics_allow (loopback by default) may: nothing there
is secret to the operator, but who runs how many jobs, and what they print, is
nobody else's business. A consumer reads its own jobs through the signed APIs.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from aiohttp import web

from localcompute.core.errors import NetworkDeniedError
from localcompute.web.context import SETTINGS


@lru_cache(maxsize=8)
def _networks(
    allowed: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in allowed)


def is_operator(request: web.Request) -> bool:
    """Whether the request comes from a network in [server] metrics_allow."""
    try:
        remote = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return False
    if remote.version == 6 and remote.ipv4_mapped is not None:
        remote = remote.ipv4_mapped  # ::ffff:127.0.0.1 on a dual-stack socket
    networks = _networks(tuple(request.app[SETTINGS].server.metrics_allow))
    return any(remote in network for network in networks)


def require_operator(request: web.Request, what: str) -> None:
    """NetworkDeniedError (403) unless the request comes from an allowed network."""
    if not is_operator(request):
        raise NetworkDeniedError(
            f"{request.remote} may not read {what}: see [server] metrics_allow"
        )
