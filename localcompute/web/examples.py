"""Example requests the OpenAPI documents show: each a request the server accepts as it
stands, but for its nonce once used and the dataset or environment it names.

Signed by the well-known test key 0x11…11 (address 0x19E7…Ff2A), with nonce 1; the
signatures are constants, checked by tests/unit/test_examples.py, so that nothing is
signed when the module is imported.
"""

from __future__ import annotations

from typing import Any

EXAMPLE_ADDRESS = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A"
EXAMPLE_KEY = "0x" + "11" * 32  # a key everyone knows: never use it for anything else
EXAMPLE_DATASET = "did:op:0123456789abcdef"
EXAMPLE_ENVIRONMENT = "ocean-compute"

_ALGORITHM_META: dict[str, Any] = {
    "rawcode": "print('hello')",
    "container": {"image": "python", "tag": "3.12-slim", "entrypoint": "python $ALGO"},
}

# consumerAddress + dataset.documentId + nonce
PROVIDER_START: dict[str, Any] = {
    "dataset": {"documentId": EXAMPLE_DATASET},
    "algorithm": {"meta": _ALGORITHM_META},
    "environment": EXAMPLE_ENVIRONMENT,
    "consumerAddress": EXAMPLE_ADDRESS,
    "nonce": "1",
    "signature": (
        "0x24145bb05631b632eebe307f314e474fcc630b8fe496b05a1aa098c84ebfa84852ae88b470f49e045c"
        "ef394e2002d0a2be4c512717567130876a39b381068c4c01"
    ),
}

# consumerAddress + nonce + "freeStartCompute"
NODE_FREE_COMPUTE: dict[str, Any] = {
    "consumerAddress": EXAMPLE_ADDRESS,
    "environment": EXAMPLE_ENVIRONMENT,
    "algorithm": {"meta": _ALGORITHM_META},
    "datasets": [],
    "nonce": "1",
    "signature": (
        "0xc18aead0a002d69861a5b9f5c16e301ec7fd0f5793b58e872bd48dc27b4505972765b9b0978717e1"
        "36e972ce98d6eb1ac17feaa3a8cffdf67d1781c0622c41c001"
    ),
}

# The signed messages, for the test that checks the signatures.
SIGNED_MESSAGES: tuple[tuple[dict[str, Any], str], ...] = (
    (PROVIDER_START, f"{EXAMPLE_ADDRESS}{EXAMPLE_DATASET}1"),
    (NODE_FREE_COMPUTE, f"{EXAMPLE_ADDRESS}1freeStartCompute"),
)


def examples(request: dict[str, Any]) -> dict[str, Any]:
    """A model's `json_schema_extra`: this request as its one example."""
    return {"examples": [request]}
