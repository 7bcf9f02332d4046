"""Request parameters: the query string and the JSON body, merged, parsed into a model.

Ocean's clients differ: ocean.py sends GET/PUT/DELETE parameters in the query
string, ocean.js sends a JSON body. Both are read on every method; the query wins
on a conflict. Parsing errors become Ocean's validation answer, never a 500.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema

from localcompute.core.errors import RequestValidationError

M = TypeVar("M", bound=BaseModel)


def absent_if_empty(value: Any) -> Any:
    """Clients send optional fields they have no value for as "" or {}: that means absent.

    ocean.py always sends algorithm `url: ""` and `checksum: ""` beside rawcode, and
    signs an absent documentId as "". Only the exact empty value is absent: a field
    that is present but wrong is still refused by its own rule.
    """
    return None if value in ("", {}) else value


OptionalText = Annotated[str | None, BeforeValidator(absent_if_empty)]
"""A string field where "" means the field was not sent."""

ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"
SIGNATURE_PATTERN = r"^(0x)?[0-9a-fA-F]{130}$"

Nonce = Annotated[
    str | int | float,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"},
                {"type": "number", "minimum": 0},
            ],
            "description": "Greater than the last nonce this server accepted from the signer.",
        }
    ),
]
"""Clients send nonces as JSON numbers (ocean.py) or strings (ocean.js)."""

# An algorithm is given in `meta` or named by `documentId` (meta wins), in both dialects.
META_OR_DOCUMENT_ID: dict[str, Any] = {
    "anyOf": [
        {"required": ["meta"]},
        {"required": ["documentId"], "properties": {"documentId": {"minLength": 1}}},
    ]
}

AddressText = Annotated[str, Field(pattern=ADDRESS_PATTERN, description="An Ethereum address.")]

Signature = Annotated[
    str,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": SIGNATURE_PATTERN,
            "description": "EIP-191 personal_sign of the operation's message: r, s, v as hex.",
        }
    ),
]
"""A signature as the document states it; checked (its bytes, its signer) when verified."""


class RequestModel(BaseModel):
    """A request of either dialect: clients send more than we read (output, language, …),
    which is ignored, never an error.

    Each is built (its validator made) when first used, not at import: a server that
    only ever hears one dialect, as `localcompute run`'s does, builds only its
    requests (building the three dialects' took about 40 ms of every start).
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True, defer_build=True)


_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "dict_type": "an object",
    "list_type": "a list",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


async def read_params(request: web.Request) -> dict[str, Any]:
    """The JSON body (an object) overlaid with the query string."""
    params: dict[str, Any] = {}
    if request.can_read_body:
        raw = await request.read()
        if raw.strip():
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as e:
                raise RequestValidationError({"body": [f"The body is not valid JSON: {e}"]}) from e
            if not isinstance(body, dict):
                raise RequestValidationError({"body": ["The body must be a JSON object."]})
            params.update(body)
    params.update(request.query)
    return params


def parse(model: type[M], params: dict[str, Any]) -> M:
    """`params` as `model`; RequestValidationError names each bad field, dotted."""
    try:
        return model.model_validate(params)
    except ValidationError as e:
        errors: dict[str, list[str]] = {}
        for err in e.errors():
            field = ".".join(str(p) for p in err["loc"]) or "body"
            errors.setdefault(field, []).append(_message(field, err["type"], err["msg"]))
        raise RequestValidationError(errors) from e


def _message(field: str, kind: str, fallback: str) -> str:
    if kind == "missing":
        return f"The {field} field is required."
    if kind in _TYPE_WORDS:
        return f"The {field} must be {_TYPE_WORDS[kind]}."
    return f"The {field} is not valid: {fallback.removeprefix('Value error, ')}"
