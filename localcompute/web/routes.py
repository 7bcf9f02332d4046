"""Every route of the server, in one table: the router, GET / and the OpenAPI document use it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from pydantic import BaseModel

from localcompute.web import (
    consumer_events,
    discovery,
    node,
    node_auth,
    node_requests,
    operator,
    operator_requests,
    provider,
    provider_requests,
)
from localcompute.web.context import SETTINGS
from localcompute.web.discovery import ENDPOINTS, ServiceEndpoints

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    name: str  # the serviceEndpoints name Ocean's clients look up
    method: str
    path: str
    handler: Handler
    summary: str
    model: type[BaseModel] | None = None  # its parameters, from the query or a JSON body
    returns: str = "StatusList"  # the OpenAPI schema of a 200 answer


PROVIDER_ROUTES: tuple[Route, ...] = (
    Route(
        "nonce",
        "GET",
        "/api/services/nonce",
        provider.nonce,
        "The last nonce accepted from userAddress (0 when none).",
        provider_requests.NonceRequest,
        "Nonce",
    ),
    Route(
        "computeEnvironments",
        "GET",
        "/api/services/computeEnvironments",
        provider.environments,
        "The compute environments, keyed by chain id.",
        provider_requests.EnvironmentsRequest,
        "EnvironmentsByChain",
    ),
    Route(
        "initializeCompute",
        "POST",
        "/api/services/initializeCompute",
        provider.initialize,
        "Check a compute request as a start would; answers validOrder without fees.",
        provider_requests.InitializeRequest,
        "Initialize",
    ),
    Route(
        "computeStart",
        "POST",
        "/api/services/compute",
        provider.compute_start,
        "Start a job. Signed: consumerAddress + dataset.documentId + nonce.",
        provider_requests.StartRequest,
    ),
    Route(
        "computeStatus",
        "GET",
        "/api/services/compute",
        provider.compute_status,
        "The consumer's jobs, filtered by jobId and documentId.",
        provider_requests.StatusRequest,
    ),
    Route(
        "computeStop",
        "PUT",
        "/api/services/compute",
        provider.compute_stop,
        "Stop jobs. Signed: consumerAddress + jobId + documentId + nonce.",
        provider_requests.StopJobRequest,
    ),
    Route(
        "computeDelete",
        "DELETE",
        "/api/services/compute",
        provider.compute_delete,
        "Stop and delete jobs: containers, folder and results. Signed as stop.",
        provider_requests.DeleteRequest,
    ),
    Route(
        "computeResult",
        "GET",
        "/api/services/computeResult",
        provider.compute_result,
        "Download one result (Range supported). Signed: consumerAddress + jobId + index + nonce.",
        provider_requests.ResultRequest,
        "File",
    ),
    Route(
        "computeStreamableLogs",
        "GET",
        "/api/services/computeStreamableLogs",
        provider.compute_streamable_logs,
        "The running algorithm's stdout and stderr, live (text/plain, chunked); 404 when it "
        "is not running. Signed: consumerAddress + jobId + nonce.",
        provider_requests.LogsRequest,
        "Logs",
    ),
    Route(
        "computeEvents",
        "GET",
        "/api/services/computeEvents",
        consumer_events.provider_events,
        "The consumer's own jobs' status changes, live (Server-Sent Events), after "
        "lastEventId or the Last-Event-ID header. Signed: consumerAddress + nonce + "
        "computeEvents.",
        provider_requests.EventsRequest,
        "EventStream",
    ),
)


def _operator_routes() -> tuple[Route, ...]:
    """Each at the deployed path (/api/v1/operator/…) and the documented one (/api/v1/…)."""
    table = (
        (
            "Create",
            "POST",
            "compute",
            operator.create,
            "Start a job from a one-stage workflow. Signed by a provider: owner + nonce.",
            operator_requests.CreateRequest,
        ),
        (
            "Status",
            "GET",
            "compute",
            operator.status,
            "Jobs by agreementId, jobId or owner. Signed: owner + jobId + nonce.",
            operator_requests.JobFilter,
        ),
        (
            "Stop",
            "PUT",
            "compute",
            operator.stop,
            "Stop jobs; filters and signature as status.",
            operator_requests.JobFilter,
        ),
        (
            "Delete",
            "DELETE",
            "compute",
            operator.delete,
            "Stop and delete jobs: containers, folder and results.",
            operator_requests.JobFilter,
        ),
        (
            "RunningJobs",
            "GET",
            "runningjobs",
            operator.running_jobs,
            "Every unfinished job, or one owner's when owner is sent. Signed: owner + nonce.",
            operator_requests.OwnerFilter,
        ),
        (
            "GetResult",
            "GET",
            "getResult",
            operator.get_result,
            "Download one result (Range supported). Signed: owner + jobId + nonce.",
            operator_requests.ResultRequest,
        ),
        (
            "Logs",
            "GET",
            "logs",
            operator.logs,
            "The running algorithm's stdout and stderr, live (text/plain, chunked). "
            "Signed: owner + jobId + nonce.",
            operator_requests.LogsRequest,
        ),
        (
            "Environments",
            "GET",
            "environments",
            operator.environments,
            "The compute environments, as a list.",
            None,
        ),
    )
    routes = []
    for name, method, tail, handler, summary, model in table:
        returns = {"GetResult": "File", "Logs": "Logs", "Environments": "Environments"}.get(
            name, "OperatorStatusList"
        )
        for prefix, suffix in (("/api/v1/operator/", ""), ("/api/v1/", "Alias")):
            routes.append(
                Route(
                    f"operator{name}{suffix}",
                    method,
                    prefix + tail,
                    handler,
                    summary,
                    model,
                    returns,
                )
            )
    return tuple(routes)


OPERATOR_ROUTES = _operator_routes()

# Ocean Node's dialect, at paths relative to its prefix ([node] prefix, /node by
# default): ocean.js 8 builds each URL from the node URI and these paths.
NODE_ROUTES: tuple[Route, ...] = (
    Route(
        "nonce",
        "GET",
        "/api/services/nonce",
        node.nonce,
        "The last nonce accepted from userAddress in this dialect, as a string.",
        node_requests.NonceRequest,
        "Nonce",
    ),
    Route(
        "computeEnvironments",
        "GET",
        "/api/services/computeEnvironments",
        node.environments,
        "The environments in Ocean Node's shape (resources in cores and GB, a free block).",
        node_requests.EnvironmentsRequest,
        "NodeEnvironments",
    ),
    Route(
        "freeCompute",
        "POST",
        "/api/services/freeCompute",
        node.free_compute,
        "Start a free job. Signed: consumerAddress + nonce + freeStartCompute, or a token.",
        node_requests.FreeComputeRequest,
        "NodeJobList",
    ),
    Route(
        "computeStart",
        "POST",
        "/api/services/compute",
        node.compute_start,
        "Paid compute needs a chain: always a 400 that says so.",
        None,
        "Error",
    ),
    Route(
        "initializeCompute",
        "POST",
        "/api/services/initializeCompute",
        node.initialize_compute,
        "Paid compute needs a chain: always a 400 that says so.",
        None,
        "Error",
    ),
    Route(
        "computeStatus",
        "GET",
        "/api/services/compute",
        node.status,
        "The owner's jobs: by jobId, or all of them with a token.",
        node_requests.StatusRequest,
        "NodeJobList",
    ),
    Route(
        "computeStop",
        "PUT",
        "/api/services/compute",
        node.stop,
        "Stop a job. Signed: consumerAddress + nonce + stopCompute, or a token.",
        node_requests.StopComputeRequest,
        "NodeJobList",
    ),
    Route(
        "computeDelete",
        "DELETE",
        "/api/services/compute",
        node.compute_delete,
        "Not part of the dialect: always a 400 that says so.",
        None,
        "Error",
    ),
    Route(
        "computeResult",
        "GET",
        "/api/services/computeResult",
        node.result,
        "Download result `index` of the status's results list (Range supported). Signed: "
        "consumerAddress + nonce + getComputeResult, or see [node] unsigned_results.",
        node_requests.ResultRequest,
        "File",
    ),
    Route(
        "computeStreamableLogs",
        "GET",
        "/api/services/computeStreamableLogs",
        node.logs,
        "The running algorithm's stdout and stderr, live (text/plain, chunked); 404 when "
        "it is not running. Signed: consumerAddress + nonce + getComputeStreamableLogs.",
        node_requests.LogsRequest,
        "Logs",
    ),
    Route(
        "computeEvents",
        "GET",
        "/api/services/computeEvents",
        consumer_events.node_events,
        "The consumer's own jobs' status changes, live (Server-Sent Events), after "
        "lastEventId or the Last-Event-ID header. Signed: consumerAddress + nonce + "
        "computeEvents, or a token.",
        node_requests.EventsRequest,
        "EventStream",
    ),
    Route(
        "generateAuthToken",
        "POST",
        "/api/services/auth/token",
        node_auth.create_token,
        "An auth token (a JWT whose payload holds the address). Signed: address + nonce + "
        "createAuthToken.",
        node_requests.CreateTokenRequest,
        "Token",
    ),
    Route(
        "invalidateAuthToken",
        "POST",
        "/api/services/auth/token/invalidate",
        node_auth.invalidate_token,
        "Invalidate a token for good. Signed by its owner: address + nonce "
        "(+ invalidateAuthToken).",
        node_requests.InvalidateTokenRequest,
        "Success",
    ),
    Route(
        "directCommand",
        "POST",
        "/directCommand",
        discovery.direct_command,
        'Only {"command": "status"}: the node\'s id and public key.',
        node_requests.DirectCommandRequest,
        "Error",
    ),
)


def node_routes(prefix: str) -> tuple[Route, ...]:
    """The node dialect's routes mounted under `prefix`, named node<Name>."""
    return tuple(
        Route(
            "node" + r.name[0].upper() + r.name[1:],
            r.method,
            prefix + r.path,
            r.handler,
            r.summary,
            r.model,
            r.returns,
        )
        for r in NODE_ROUTES
    )


def node_service_endpoints() -> dict[str, list[str]]:
    return {r.name: [r.method, r.path] for r in NODE_ROUTES}


def all_routes(node_prefix: str = "/node") -> tuple[Route, ...]:
    return PROVIDER_ROUTES + OPERATOR_ROUTES + node_routes(node_prefix)


def service_endpoints() -> dict[str, list[str]]:
    return {r.name: [r.method, r.path] for r in PROVIDER_ROUTES}


def setup_routes(app: web.Application) -> None:
    app[ENDPOINTS] = ServiceEndpoints(service_endpoints(), node_service_endpoints())
    app.router.add_get("/", discovery.root)
    prefix = app[SETTINGS].node.prefix
    app.router.add_get(prefix, discovery.node_root)
    app.router.add_get(prefix + "/", discovery.node_root)
    for route in all_routes(prefix):
        if route.method == "GET":
            # No implicit HEAD: a HEAD must not consume a nonce or stream a result.
            app.router.add_get(route.path, route.handler, allow_head=False)
        else:
            app.router.add_route(route.method, route.path, route.handler)
