"""The fetch document (fetch.json): what the engine asks the fetch to bring into a job's
folder, parsed and checked. Messages name keys only, never values: they reach the
consumer's log, and an input's URL or path is the dataset owner's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_CONNECT_TIMEOUT = 30.0
DEFAULT_IDLE_TIMEOUT = 120.0


class FetchError(Exception):
    """A failure whose message is safe for the consumer's log: never an input's URL or path."""


@dataclass(frozen=True)
class Timeouts:
    """connect bounds connecting (and the TLS handshake); idle bounds each wait for data."""

    connect: float
    idle: float


@dataclass(frozen=True)
class FetchFile:
    url: str | None
    path: str | None


@dataclass(frozen=True)
class FetchInput:
    did: str
    folder: str
    files: tuple[FetchFile, ...]
    ddo: Any


@dataclass(frozen=True)
class FetchAlgorithm:
    did: str
    folder: str
    rawcode: Any
    url: str | None
    path: str | None
    ddo: Any


@dataclass(frozen=True)
class FetchDocument:
    inputs: tuple[FetchInput, ...]
    algorithm: FetchAlgorithm
    algocustomdata: Any
    has_algocustomdata: bool
    timeouts: Timeouts


def parse_spec(raw: Any) -> FetchDocument:
    """Validate the spec's shape; messages name keys only, never values (they may be secret)."""
    spec = _object(raw, "spec")
    inputs = tuple(_parse_input(item) for item in _list(spec.get("inputs"), "inputs"))
    return FetchDocument(
        inputs=inputs,
        # A missing algorithm is not a malformed spec but an algorithm failure (32),
        # found when there turns out to be nothing to fetch.
        algorithm=_parse_algorithm(_object(spec.get("algorithm") or {}, "algorithm")),
        algocustomdata=spec.get("algocustomdata"),
        has_algocustomdata=spec.get("has_algocustomdata") is True,
        timeouts=Timeouts(
            connect=_seconds(spec, "connect_timeout", DEFAULT_CONNECT_TIMEOUT),
            idle=_seconds(spec, "idle_timeout", DEFAULT_IDLE_TIMEOUT),
        ),
    )


def _parse_input(raw: Any) -> FetchInput:
    item = _object(raw, "input")
    files = tuple(_parse_file(entry) for entry in _list(item.get("files"), "input files"))
    return FetchInput(
        did=_text(item, "did"), folder=_text(item, "folder"), files=files, ddo=item.get("ddo")
    )


def _parse_file(raw: Any) -> FetchFile:
    entry = _object(raw, "input file")
    return FetchFile(url=_optional_text(entry, "url"), path=_optional_text(entry, "path"))


def _parse_algorithm(item: dict[str, Any]) -> FetchAlgorithm:
    return FetchAlgorithm(
        did=_text(item, "did"),
        folder=_text(item, "folder"),
        rawcode=item.get("rawcode"),
        url=_optional_text(item, "url"),
        path=_optional_text(item, "path"),
        ddo=item.get("ddo"),
    )


def _object(raw: Any, what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError(f"{what} must be a JSON object")
    return raw


def _list(raw: Any, what: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError(f"{what} must be a JSON array")
    return raw


def _text(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


def _optional_text(item: dict[str, Any], key: str) -> str | None:
    return _text(item, key) or None


def _seconds(spec: dict[str, Any], key: str, default: float) -> float:
    value = spec.get(key)
    if value is None:
        return default
    # bool is an int to Python, but true as a timeout is surely a bug upstream.
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{key} must be a positive number")
    return float(value)
