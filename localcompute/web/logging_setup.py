"""How the server logs: text or JSON lines, at a chosen level, and an access log that
never records a signature, nonce or token (they sit in query strings)."""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import parse_qsl, urlencode

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

# Query parameters that are credentials, or would let a reader replay or link a call.
SECRET_PARAMS = frozenset(
    {"signature", "providersignature", "nonce", "token", "authorization", "consumersignature"}
)
REDACTED = "[redacted]"


def redact_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode(
        [(k, REDACTED if k.lower() in SECRET_PARAMS else v) for k, v in pairs], safe="[]:/"
    )


class RedactingAccessLogger(AbstractAccessLogger):
    """One line per request: who, what (query redacted), status, size, milliseconds."""

    @property
    def enabled(self) -> bool:
        """Nothing is built for a request when INFO is off (--log-level warning)."""
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time_: float) -> None:
        query = request.query_string
        target = request.path + (f"?{redact_query(query)}" if query else "")
        self.logger.info(
            '%s "%s %s" %d %d %.1fms',
            request.remote,
            request.method,
            target,
            response.status,
            response.body_length,
            time_ * 1000,
        )


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
