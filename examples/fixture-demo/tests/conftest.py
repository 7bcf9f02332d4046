from __future__ import annotations

from typing import Any

import pytest

DATASET_DID = "did:op:" + "d0" * 32


@pytest.fixture(scope="session")
def localcompute_config() -> dict[str, Any]:
    """The dataset the tests compute on: a file of this project that the server serves by
    its DID. A relative path here is relative to the rootdir (this project's folder)."""
    return {
        "docker": {"pull_policy": "never"},
        "datasets": [{"did": DATASET_DID, "files": ["data/words.txt"]}],
    }
