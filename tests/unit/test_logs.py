"""The server's log lines: credentials never written, JSON lines when asked."""

from __future__ import annotations

import json
import logging

from localcompute.web.logging_setup import JsonFormatter, redact_query


def test_signatures_nonces_and_tokens_are_redacted_and_the_rest_kept() -> None:
    query = (
        "consumerAddress=0xabc&jobId=j1&index=2&nonce=17&signature=0xdeadbeef"
        "&providerSignature=0xfeed&token=eyJ.x.y&Signature=0x1"
    )
    redacted = redact_query(query)
    assert "deadbeef" not in redacted and "feed" not in redacted and "eyJ" not in redacted
    assert "nonce=[redacted]" in redacted and "Signature=[redacted]" in redacted
    assert "consumerAddress=0xabc" in redacted and "jobId=j1" in redacted and "index=2" in redacted


def test_json_lines_carry_time_level_logger_and_message() -> None:
    record = logging.LogRecord(
        "localcompute", logging.WARNING, "f", 1, "job %s: %s", ("j1", "x"), None
    )
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "warning" and line["logger"] == "localcompute"
    assert line["message"] == "job j1: x" and line["time"].endswith("Z")
