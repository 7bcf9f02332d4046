"""The documents' example requests are requests the server accepts: they parse with the
models the handlers use, and their signatures are by the address they name."""

from __future__ import annotations

from typing import Any

import pytest

from localcompute.core import signing
from localcompute.web import node_requests, provider_requests
from localcompute.web.examples import EXAMPLE_ADDRESS, EXAMPLE_KEY, SIGNED_MESSAGES
from localcompute.web.openapi import build_openapi


def test_the_example_key_is_the_example_address() -> None:
    assert signing.Key(bytes.fromhex(EXAMPLE_KEY[2:])).address == EXAMPLE_ADDRESS


@pytest.mark.parametrize(("request_body", "message"), SIGNED_MESSAGES)
def test_each_example_is_signed_by_its_address(request_body: dict[str, Any], message: str) -> None:
    signing.verify(message, request_body["signature"], request_body["consumerAddress"])


def test_the_examples_parse_and_are_in_the_documents() -> None:
    provider_requests.StartRequest.model_validate(SIGNED_MESSAGES[0][0])
    node_requests.FreeComputeRequest.model_validate(SIGNED_MESSAGES[1][0])
    start = build_openapi("provider")["components"]["schemas"]["StartRequest"]
    assert start["examples"] == [SIGNED_MESSAGES[0][0]]
    free = build_openapi("node")["components"]["schemas"]["FreeComputeRequest"]
    assert free["examples"] == [SIGNED_MESSAGES[1][0]]
