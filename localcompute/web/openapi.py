"""One OpenAPI 3.1 document per dialect, built from the route table and the very request
models the handlers validate with, so that the documents cannot drift from the server.

pydantic's JSON Schema (2020-12, which OpenAPI 3.1 uses as is) gives each request; its
`$defs` are hoisted into `components/schemas`, so every `$ref` resolves. Answers are
described by the schemas below, which the served answers are tested against (by
schemathesis, in tests/integration/test_fuzz.py).
"""

from __future__ import annotations

import functools
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, TypeAdapter

from localcompute import __version__
from localcompute.core.status import JobStatus
from localcompute.web.status_shape import OperatorStatus, ProviderStatus

Dialect = Literal["provider", "operator", "node"]
DIALECTS: tuple[Dialect, ...] = ("provider", "operator", "node")
SCHEMA_REF = "#/components/schemas/{model}"


def _shape_schemas(**shapes: type) -> dict[str, Any]:
    """The schemas of the status objects the views build (web/status_shape.py), by name,
    with every schema they refer to."""
    found: dict[str, Any] = {}
    for name, shape in shapes.items():
        schema = TypeAdapter(shape).json_schema(ref_template=SCHEMA_REF)
        found.update(schema.pop("$defs", {}))
        found[name] = schema
    return found


@functools.cache
def response_schemas() -> dict[str, Any]:
    """The answers' schemas, by name: made for the first document asked for, not at import
    (pydantic's schema of the status shapes cost every command that serves about 10 ms)."""
    return {**_shape_schemas(Status=ProviderStatus, OperatorStatus=OperatorStatus), **_ANSWERS}


# Answers, per dialect: only the schemas a dialect's document references are put in it.
_ANSWERS: dict[str, Any] = {
    "StatusList": {"type": "array", "items": {"$ref": "#/components/schemas/Status"}},
    "OperatorStatusList": {
        "type": "array",
        "items": {"$ref": "#/components/schemas/OperatorStatus"},
    },
    "Nonce": {
        "type": "object",
        "required": ["nonce"],
        "properties": {"nonce": {"type": ["string", "integer"]}},
    },
    "EnvironmentsByChain": {
        "type": "object",
        "additionalProperties": {
            "type": "array",
            "items": {"$ref": "#/components/schemas/Environment"},
        },
    },
    "Environment": {
        "type": "object",
        "required": ["id", "cpuNumber", "ramGB", "diskGB", "maxJobs", "currentJobs"],
        "properties": {
            "id": {"type": "string"},
            "desc": {"type": "string"},
            "cpuNumber": {"type": "number"},
            "gpuNumber": {"type": "integer"},
            "ramGB": {"type": "number"},
            "diskGB": {"type": "number"},
            "priceMin": {"type": "number"},
            "currentJobs": {"type": "integer", "minimum": 0},
            "maxJobs": {"type": "integer", "minimum": 1},
            "available": {"type": "boolean"},
        },
    },
    "Environments": {"type": "array", "items": {"$ref": "#/components/schemas/Environment"}},
    "Initialize": {"type": "object"},
    "File": {"type": "string", "format": "binary"},
    "Logs": {"type": "string", "description": "stdout and stderr, as they come"},
    "EventStream": {
        "type": "string",
        "description": "Server-Sent Events: `event: ready` {lastEventId} first; then per status "
        "change `id: N`, `event: status` and {id, jobId, owner, environment, status, "
        "statusText, terminationReason, exitCode, at}; `event: gap` {after, resumed} when "
        "events asked for are no longer kept (read the jobs afresh); `: keepalive` comments.",
    },
    "ValidationError": {
        "type": "object",
        "required": ["errors"],
        "properties": {
            "errors": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
            },
            "message": {"type": "string"},
            "success": {"type": "boolean"},
        },
    },
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {}}},
    "NodeJobList": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["jobId", "status", "statusText"],
            "properties": {
                "jobId": {"type": "string"},
                "owner": {"type": "string"},
                "status": {"type": "integer", "enum": [int(s) for s in JobStatus]},
                "statusText": {"type": "string"},
            },
            "description": "ocean.js 8's NodeComputeJob",
        },
    },
    "NodeEnvironments": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["id", "resources"],
            "properties": {
                "id": {"type": "string"},
                "resources": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "max", "min", "inUse"],
                        "properties": {
                            "id": {"type": "string"},
                            "total": {"type": "number"},
                            "max": {"type": "number"},
                            "min": {"type": "number"},
                            "inUse": {"type": "number"},
                        },
                    },
                },
            },
            "description": "Ocean Node's ComputeEnvironment",
        },
    },
    "Token": {"type": "object", "required": ["token"], "properties": {"token": {"type": "string"}}},
    "Success": {"type": "object", "properties": {"success": {"type": "boolean"}}},
}

SIGNING: dict[Dialect, str] = {
    "provider": (
        "Signed operations carry `consumerAddress`, a `nonce` greater than the last one this "
        "server accepted from that address (GET nonce says which; a decimal number, as "
        "ocean.py sends it, or its string), and `signature`: an EIP-191 personal_sign "
        "(`\\x19Ethereum Signed Message:\\n32` + keccak256(message)) by consumerAddress, "
        "65 bytes as 0x-hex. The message of each operation is in its description; "
        "`+` means plain concatenation of the texts."
    ),
    "operator": (
        "Every operation but environments is called by a provider listed in [operator] "
        "allowed_providers (loopback callers when the list is empty). It sends "
        "`providerAddress`, `nonce` (greater than its last one) and `providerSignature`: "
        "EIP-191 personal_sign of the message named in the operation's description."
    ),
    "node": (
        "Ocean Node's dialect. Signed operations send `consumerAddress`, `nonce` (greater than "
        "the last one accepted in this dialect) and `signature`: EIP-191 personal_sign of "
        "the message named in the operation's description; or, instead, an auth token from "
        "auth/token in the `Authorization` header."
    ),
}

TITLES: dict[Dialect, str] = {
    "provider": "localcompute: the provider compute API (/api/services)",
    "operator": "localcompute: the Operator-Service API v1 (/api/v1)",
    "node": "localcompute: Ocean Node's compute dialect",
}


def _error(description: str, *schemas: str) -> dict[str, Any]:
    refs = [{"$ref": SCHEMA_REF.format(model=s)} for s in schemas or ("Error",)]
    schema = refs[0] if len(refs) == 1 else {"anyOf": refs}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def request_schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    """`model`'s JSON Schema, its definitions hoisted into `components`."""
    schema: dict[str, Any] = _nullable(
        model.model_json_schema(by_alias=True, ref_template=SCHEMA_REF)
    )
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    return schema


def _nullable(value: Any) -> Any:
    """pydantic's `anyOf: [{type: T, …}, {type: null}]` as `{type: [T, null], …}`, and
    `(A | B) | None` as `A | B | None`: the same values, in the forms code generators
    turn into `T | None`."""
    if isinstance(value, list):
        return [_nullable(v) for v in value]
    if not isinstance(value, dict):
        return value
    # "default": null says no more than "not required" does, and generators copy it
    # into the member types of a union, where it is no valid value.
    value = {k: _nullable(v) for k, v in value.items() if not (k == "default" and v is None)}
    options = value.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        [other] = [o for o in options if o != {"type": "null"}]
        if isinstance(other.get("type"), str) and "$ref" not in other:
            del value["anyOf"]
            return {**other, **value, "type": [other["type"], "null"]}
        if isinstance(other.get("anyOf"), list):  # (A | B) | None as A | B | None
            inner = {k: v for k, v in other.items() if k != "anyOf"}
            return {**inner, **value, "anyOf": [*other["anyOf"], {"type": "null"}]}
    return value


def _referenced(value: Any) -> set[str]:
    """Every component schema `value` refers to."""
    found: set[str] = set()
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[1])
        for item in value.values():
            found |= _referenced(item)
    elif isinstance(value, list):
        for item in value:
            found |= _referenced(item)
    return found


def build_openapi(dialect: Dialect, node_prefix: str = "/node") -> dict[str, Any]:
    from localcompute.web.routes import OPERATOR_ROUTES, PROVIDER_ROUTES, node_routes

    routes = {
        "provider": PROVIDER_ROUTES,
        "operator": OPERATOR_ROUTES,
        "node": node_routes(node_prefix),
    }[dialect]
    validation = ("Error", "ValidationError") if dialect == "provider" else ("Error",)
    components: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {
            "operationId": route.name,
            "summary": route.summary.split(". ")[0].rstrip("."),
            "description": route.summary,
        }
        if route.model is not None:
            schema = request_schema(route.model, components)
            if route.method == "GET":
                required = set(schema.get("required", []))
                operation["parameters"] = [
                    {
                        "name": name,
                        "in": "query",
                        "required": name in required,
                        "schema": {k: v for k, v in prop.items() if k != "title"},
                    }
                    for name, prop in schema.get("properties", {}).items()
                ]
            else:
                components[route.model.__name__] = schema
                operation["requestBody"] = {
                    "required": True,
                    "description": "A JSON object; the same fields may come in the query.",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": SCHEMA_REF.format(model=route.model.__name__)}
                        }
                    },
                }
        content_type = {
            "File": "application/octet-stream",
            "Logs": "text/plain",
            "EventStream": "text/event-stream",
        }.get(route.returns, "application/json")
        ok: dict[str, Any] = {
            "description": "OK",
            "content": {content_type: {"schema": {"$ref": SCHEMA_REF.format(model=route.returns)}}},
        }
        responses: dict[str, Any] = {"200": ok}
        if route.returns == "File":
            responses["206"] = {**ok, "description": "The requested byte range"}
            responses["416"] = _error("The range lies outside the file")
        responses |= {
            "400": _error("Bad input, a bad signature or nonce, or a refused request", *validation),
            "401": _error("The caller may not use this API, or its signature or token is bad"),
            "404": _error("No such job or result for this caller"),
            "413": _error("The body is over the size limit"),
            "429": _error(
                "Too many requests or jobs ([limits]): the body names the limit, its value "
                "and retryAfter (seconds); a Retry-After header says when, rounded up"
            ),
            "503": _error("The Docker engine does not answer"),
        }
        operation["responses"] = responses
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    # Only the answers this dialect gives, and everything they refer to.
    answers = response_schemas()
    wanted = _referenced(paths)
    while True:
        more = _referenced([answers[n] for n in wanted if n in answers])
        if more <= wanted:
            break
        wanted |= more
    components |= {n: answers[n] for n in sorted(wanted) if n in answers}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLES[dialect],
            "version": __version__,
            "description": SIGNING[dialect],
        },
        "paths": paths,
        "components": {"schemas": dict(sorted(components.items()))},
    }


async def openapi_handler(request: web.Request) -> web.Response:
    """/api/openapi.json (the provider API) and /api/openapi/<dialect>.json."""
    from localcompute.web.context import SETTINGS

    dialect = request.match_info.get("dialect", "provider")
    if dialect not in DIALECTS:
        raise web.HTTPNotFound(reason=f"no OpenAPI document {dialect!r}: {', '.join(DIALECTS)}")
    return web.json_response(build_openapi(dialect, request.app[SETTINGS].node.prefix))
