"""Where a request is charged to its bucket (engine/buckets.py): the web layer's side of
back-pressure. Every dialect calls these three, at the same points:

- `start(request, address)`: a signed call that writes (start, stop, delete, a token),
  once its signature is verified, so nobody drains another address's bucket by sending
  its address, and before its nonce is consumed or anything is written, so a 429 uses
  up no nonce and changes nothing;
- `read(request, address, job)`: a signed read, after its signature and the job's
  look-up, before its nonce is consumed. Keyed by the job only when it is one the
  address may read: a client polling each of its jobs once a second is never limited,
  and reads of made-up job ids all share the address's one other bucket;
- `unsigned(request)`: a route without a signature, by client IP, first thing.

And `empty(request, kind, address, job_id)` before a signature is checked, where the
address is sent (the provider API): a request whose bucket is empty now is refused before
its signature is recovered, most of what a refusal would cost. It takes no token, so a
forged request still drains nobody's bucket; its sender learns only that it is empty.

Not limited at all: /health, /healthz and /metrics (a load balancer or a scraper must
still see the server while someone floods it, and they change nothing), the OpenAPI
documents (made once), and the stage routes a job's own containers call (a job must not
fail because its client polls).
"""

from __future__ import annotations

import functools
import ipaddress

from aiohttp import web

from localcompute.core.models import Job
from localcompute.engine.buckets import Kind, RequestBuckets
from localcompute.web.context import BUCKETS


@functools.lru_cache(maxsize=4096)  # asked on every request; parsing costs more than that
def is_loopback(remote: str | None) -> bool:
    """127.0.0.0/8, ::1 and ::ffff:127.x (a dual-stack socket's view of an IPv4 one)."""
    try:
        ip = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _buckets(request: web.Request) -> RequestBuckets:
    return request.app[BUCKETS]


def start(request: web.Request, address: str) -> None:
    """A verified signed call of `address` that writes: LimitError (429) past its bucket."""
    buckets = _buckets(request)
    if not buckets.exempt(address, loopback=is_loopback(request.remote)):
        buckets.take(address.lower(), "start")


def read(request: web.Request, address: str, job: Job | None) -> None:
    """A verified signed read of `address`, about `job` (None: several jobs, or one it may
    not read or that does not exist)."""
    buckets = _buckets(request)
    if not buckets.exempt(address, loopback=is_loopback(request.remote)):
        buckets.take((address.lower(), job.job_id if job is not None else None), "read")


def empty(request: web.Request, kind: Kind, address: str, job_id: str | None = None) -> None:
    """LimitError (429) when the bucket `start` or `read` would charge is empty already;
    nothing is taken. For a read, `job_id` as sent: only a job the address may read has
    a bucket of its own, so a made-up one is refused by `read`, later."""
    buckets = _buckets(request)
    if not buckets.exempt(address, loopback=is_loopback(request.remote)):
        key = address.lower() if kind == "start" else (address.lower(), job_id)
        buckets.check(key, kind)


def unsigned(request: web.Request) -> None:
    """A request without a signature, by client IP: an address it names is not proven,
    so it neither chooses the bucket nor is exempt."""
    buckets = _buckets(request)
    if not buckets.exempt(loopback=is_loopback(request.remote)):
        buckets.take(request.remote or "", "unsigned")
