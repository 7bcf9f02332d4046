"""A consumer's own event stream: its jobs' status changes, live, so that a client waits
for a job's end without polling (Server-Sent Events, as web/sse.py writes them).

Signed like the dialect's other reads, over consumerAddress + nonce + "computeEvents",
and only the signer's own jobs are sent. The nonce is spent when the stream opens: a
reconnect signs a fresh one and sends the last event id it saw (the Last-Event-ID
header, or lastEventId), and is sent what it missed.
"""

from __future__ import annotations

from aiohttp import web

from localcompute.web import auth, node_requests, provider_requests, throttle
from localcompute.web.context import ENGINE
from localcompute.web.node_auth import authenticate, nonce_account
from localcompute.web.params import parse, read_params
from localcompute.web.sse import last_event_id, stream_feed

COMMAND = "computeEvents"


async def provider_events(request: web.Request) -> web.StreamResponse:
    req = parse(provider_requests.EventsRequest, await read_params(request))
    message = f"{req.consumerAddress}{auth.nonce_text(req.nonce)}{COMMAND}"
    auth.verify(message, req.signature, req.consumerAddress)
    throttle.read(request, req.consumerAddress, None)
    after = last_event_id(request, req.lastEventId)
    await request.app[ENGINE].consume_nonce(req.consumerAddress, auth.parse_nonce(req.nonce))
    return await stream_feed(request, after, owner=req.consumerAddress, kind="consumer")


async def node_events(request: web.Request) -> web.StreamResponse:
    req = parse(node_requests.EventsRequest, await read_params(request))
    caller = await authenticate(request, req, req.consumerAddress, COMMAND)
    throttle.read(request, caller.address, None)
    after = last_event_id(request, req.lastEventId)
    if caller.nonce is not None:
        await request.app[ENGINE].consume_nonce(nonce_account(caller.address), caller.nonce)
    return await stream_feed(request, after, owner=caller.address, kind="consumer")
