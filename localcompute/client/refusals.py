"""What a refusal says: the server's reason in one line, and which part of the job it
refused (an input, the algorithm), so that a caller can tell them apart."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from localcompute.core.errors import (
    AlgorithmRefusedError,
    InputRefusedError,
    RefusedError,
    RemoteError,
)

if TYPE_CHECKING:
    import aiohttp


async def refusal(response: aiohttp.ClientResponse) -> RemoteError:
    """The server's reason, in one line: Ocean's answers are {"error": …} or
    {"errors": {field: [message]}, "message": …}."""
    text = await response.text()
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = text
    kind = _refusal_kind(body)
    return kind(_reason(body) or f"HTTP {response.status}", status=response.status, body=body)


def as_answered(error: RefusedError, datasets: list[str]) -> RemoteError:
    """The engine's refusal as a client is told it (the server answers a RefusedError
    400 {"error": payload}): for a caller that asks the engine in its own process and
    must tell an input's refusal from the algorithm's as a client of the server does."""
    body = {"error": error.payload}
    kind = _refusal_kind(body)
    answered = kind(_reason(body) or "HTTP 400", status=400, body=body)
    if isinstance(answered, InputRefusedError):
        return naming_the_input(answered, datasets)
    return answered


# Ocean's codes for a dataset that refuses the algorithm, not for a missing input.
_ALGORITHM_CODES = ("no_raw_algo_allowed", "not_trusted_algo")


def _refused_resource(body: Any) -> tuple[str, str] | None:
    """(resource, code) of Ocean's {"error": {resource: code}}; None for other answers."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not error:
        return None
    resource, code = next(iter(error.items()))
    return str(resource), str(code)


def _refusal_kind(body: Any) -> type[RemoteError]:
    """Which part of a job the server refused: an input ("dataset", "datasets[1]"), the
    algorithm, or neither."""
    refused = _refused_resource(body)
    if refused is None:
        return RemoteError
    resource, code = refused
    if code.startswith(_ALGORITHM_CODES) or resource.startswith("algorithm"):
        return AlgorithmRefusedError
    if resource == "dataset" or resource.startswith("datasets["):
        return InputRefusedError
    return RemoteError


# What Ocean's codes about an input mean, for a person.
_INPUT_CODES = {"did_not_found": "the provider serves no dataset with this DID"}


def naming_the_input(error: InputRefusedError, datasets: list[str]) -> InputRefusedError:
    """`error` with the refused input named by its DID: Ocean's answer names only its
    place in the request ("dataset" is the first, "datasets[2]" the third)."""
    resource, code = _refused_resource(error.body) or ("dataset", error.message)
    place = re.fullmatch(r"datasets\[(\d+)\]", resource)
    index = 0 if resource == "dataset" else int(place.group(1)) if place else -1
    did = datasets[index] if 0 <= index < len(datasets) else resource
    meaning = _INPUT_CODES.get(code)
    message = f"dataset {did}: {code}" + (f" ({meaning})" if meaning else "")
    return InputRefusedError(message, status=error.status, body=error.body)


def _reason(body: Any) -> str:
    if isinstance(body, dict):
        if isinstance(body.get("errors"), dict):
            return "; ".join(
                f"{field}: {' '.join(map(str, m)) if isinstance(m, list) else m}"
                for field, m in body["errors"].items()
            )
        if "error" in body:
            error = body["error"]
            if isinstance(error, dict):  # Ocean's codes: {"dataset": "did_not_found"}
                return "; ".join(f"{where}: {code}" for where, code in error.items())
            return error if isinstance(error, str) else json.dumps(error)
    return str(body)[:500]
