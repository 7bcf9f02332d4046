"""The OpenAPI 3 document of every route, built from the route table and its models."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from localcompute import __version__
from localcompute.core.status import JobStatus, StopRequest, TerminationReason
from localcompute.engine.publish import RESULT_TYPES

_STATUS_OBJECT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "jobId": {"type": "string"},
        "owner": {"type": "string"},
        "agreementId": {"type": "string"},
        "documentId": {"type": "string"},
        "environment": {"type": "string"},
        "dateCreated": {"type": "string", "description": "epoch seconds"},
        "dateFinished": {"type": "string", "nullable": True},
        "status": {"type": "integer", "enum": [int(s) for s in JobStatus]},
        "statusText": {"type": "string"},
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "filename": {"type": "string"},
                    "filesize": {"type": "integer"},
                    "type": {"type": "string", "enum": list(RESULT_TYPES)},
                },
            },
        },
        "algorithmLogUrl": {"type": "string"},
        "resultsUrls": {"type": "array", "items": {"type": "string"}},
        "resultsDid": {"type": "string"},
        "stopreq": {"type": "integer", "enum": [int(s) for s in StopRequest]},
        "removed": {"type": "integer", "enum": [0, 1]},
        "algoDID": {"type": "string"},
        "inputDID": {"type": "array", "items": {"type": "string"}},
        "exitCode": {"type": "integer", "nullable": True},
        "terminationDetail": {"type": "string", "nullable": True},
        "terminationReason": {
            "type": "string",
            "nullable": True,
            "enum": [str(r) for r in TerminationReason],
        },
    },
}

SCHEMAS: dict[str, Any] = {
    "Status": _STATUS_OBJECT,
    "StatusList": {"type": "array", "items": {"$ref": "#/components/schemas/Status"}},
    "OperatorStatus": {
        "allOf": [
            {"$ref": "#/components/schemas/Status"},
            {
                "type": "object",
                "properties": {
                    "configlogUrl": {"type": "string"},
                    "publishlogUrl": {"type": "string"},
                    "algologUrl": {"type": "string"},
                    "outputsUrl": {"type": "array", "items": {"type": "string"}},
                    "output": {"type": "object", "description": "the stage output, echoed"},
                },
            },
        ]
    },
    "OperatorStatusList": {
        "type": "array",
        "items": {"$ref": "#/components/schemas/OperatorStatus"},
    },
    "Nonce": {"type": "object", "properties": {"nonce": {"type": "string"}}},
    "EnvironmentsByChain": {
        "type": "object",
        "additionalProperties": {"type": "array", "items": {"type": "object"}},
    },
    "Environments": {"type": "array", "items": {"type": "object"}},
    "Initialize": {"type": "object"},
    "File": {"type": "string", "format": "binary"},
    "Logs": {"type": "string", "description": "stdout and stderr, as they come"},
    "ValidationError": {
        "type": "object",
        "properties": {
            "errors": {"type": "object", "additionalProperties": {"type": "array"}},
            "message": {"type": "string"},
            "success": {"type": "boolean"},
        },
    },
    "Error": {"type": "object", "properties": {"error": {}}},
    "NodeJobList": {
        "type": "array",
        "items": {"type": "object", "description": "ocean.js 8's NodeComputeJob"},
    },
    "NodeEnvironments": {
        "type": "array",
        "items": {"type": "object", "description": "Ocean Node's ComputeEnvironment"},
    },
    "Token": {"type": "object", "properties": {"token": {"type": "string"}}},
    "Success": {"type": "object", "properties": {"success": {"type": "boolean"}}},
}


def _error(description: str, schema: str = "Error") -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def build_openapi(node_prefix: str = "/node") -> dict[str, Any]:
    from localcompute.web.routes import all_routes

    paths: dict[str, dict[str, Any]] = {}
    for route in all_routes(node_prefix):
        operation: dict[str, Any] = {"operationId": route.name, "summary": route.summary}
        if route.model is not None:
            schema = route.model.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
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
                operation["requestBody"] = {
                    "description": "A JSON body; the same fields are also read from the query.",
                    "content": {"application/json": {"schema": schema}},
                }
        content_type = {"File": "application/octet-stream", "Logs": "text/plain"}.get(
            route.returns, "application/json"
        )
        operation["responses"] = {
            "200": {
                "description": "OK",
                "content": {
                    content_type: {"schema": {"$ref": f"#/components/schemas/{route.returns}"}}
                },
            },
            "400": _error("Bad input, a bad signature or nonce, or a refused request"),
            "401": _error("The caller may not use this API"),
            "404": _error("No such job or result for this caller"),
            "413": _error("The body is over the size limit"),
            "503": _error("The Docker engine does not answer"),
        }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "localcompute",
            "version": __version__,
            "description": "Ocean Protocol compute-to-data on one host: the provider compute "
            f"API (/api/services), the Operator-Service API v1 (/api/v1) and Ocean Node's "
            f"dialect ({node_prefix}).",
        },
        "paths": paths,
        "components": {"schemas": SCHEMAS},
    }


async def openapi_handler(request: web.Request) -> web.Response:
    from localcompute.web.context import SETTINGS

    return web.json_response(build_openapi(request.app[SETTINGS].node.prefix))
