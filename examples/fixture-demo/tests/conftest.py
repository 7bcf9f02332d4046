from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

DATASET_DID = "did:op:" + "d0" * 32


@pytest.fixture(scope="session")
def localcompute_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The dataset the tests compute on: a local file the server serves by its DID."""
    folder: Path = tmp_path_factory.mktemp("datasets")
    (folder / "words.txt").write_text("the quick brown fox jumps over the lazy dog\n")
    return {
        "docker": {"pull_policy": "never"},
        "provider": {"dataset_roots": [str(folder)]},
        "datasets": [{"did": DATASET_DID, "files": [str(folder / "words.txt")]}],
    }
