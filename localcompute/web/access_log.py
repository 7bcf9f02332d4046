"""The server's access log: one line a request, never a signature, nonce or token
(they sit in query strings). Apart from logging_setup.py, which the command uses too,
because it needs aiohttp."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from localcompute.web.logging_setup import redact_query


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
