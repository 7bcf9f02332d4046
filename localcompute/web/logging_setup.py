"""How the server and the command log: text or JSON lines, at a chosen level; and what
the access log (access_log.py) leaves out of a query: a signature, nonce or token."""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import parse_qsl, urlencode

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
