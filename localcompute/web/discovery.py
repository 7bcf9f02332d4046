"""What a client reads first: GET / (the classic provider's document) and the node
dialect's root and directCommand status. The service-endpoint lists are the route
table's, put in the app by the router (web/routes.py), so no handler imports it back.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from localcompute import __version__
from localcompute.core.errors import RefusedError
from localcompute.web import throttle
from localcompute.web.context import PROVIDER_KEY, SETTINGS
from localcompute.web.node_requests import DirectCommandRequest
from localcompute.web.params import parse, read_params


@dataclass(frozen=True)
class ServiceEndpoints:
    """Endpoint name → [method, path], as each dialect's clients look them up."""

    provider: dict[str, list[str]]
    node: dict[str, list[str]]


ENDPOINTS = web.AppKey("service_endpoints", ServiceEndpoints)


async def root(request: web.Request) -> web.Response:
    """GET /: the classic provider's document (ocean.py and ocean.js 3.x read it).

    In the unsigned bucket like any other route: ocean.py reads it before each call, so
    a polite client sends it once a poll, and 50 a second per IP leaves room for many."""
    throttle.unsigned(request)
    settings = request.app[SETTINGS]
    address = request.app[PROVIDER_KEY].address
    return web.json_response(
        {
            "software": "localcompute",
            "version": __version__,
            "chainIds": settings.provider.chain_ids,
            "providerAddresses": {str(c): address for c in settings.provider.chain_ids},
            "serviceEndpoints": request.app[ENDPOINTS].provider,
        }
    )


def node_document(request: web.Request) -> dict[str, object]:
    key = request.app[PROVIDER_KEY]
    return {
        "nodeId": key.address,
        "chainIds": [str(c) for c in request.app[SETTINGS].provider.chain_ids],
        "providerAddress": key.address,
        "nodePublicKey": key.public_key,
        "serviceEndpoints": request.app[ENDPOINTS].node,
        "software": "localcompute",
        "version": __version__,
        "freeComputeOnly": True,
    }


async def node_root(request: web.Request) -> web.Response:
    """The node dialect's root (ocean.js 8 reads its serviceEndpoints)."""
    throttle.unsigned(request)
    return web.json_response(node_document(request))


async def direct_command(request: web.Request) -> web.Response:
    throttle.unsigned(request)
    req = parse(DirectCommandRequest, await read_params(request))
    if req.command != "status":
        raise RefusedError(f"command {req.command!r} is not served here; only status is")
    doc = node_document(request)
    return web.json_response(
        {"id": doc["nodeId"], "publicKey": doc["nodePublicKey"], "version": __version__}
    )
