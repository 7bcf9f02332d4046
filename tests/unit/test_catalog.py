"""The provider's catalog: start-up checks and Ocean's refusal codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localcompute.core.errors import ConfigError, RefusedError
from localcompute.core.settings import Settings
from localcompute.engine.catalog import Catalog


def settings(tmp_path: Path, **data: object) -> Settings:
    return Settings.model_validate({"provider": {"dataset_roots": [str(tmp_path)]}, **data})


def test_refusal_codes(tmp_path: Path) -> None:
    catalog = Catalog.load(
        settings(
            tmp_path,
            datasets=[
                {"did": "did:op:open", "files": ["https://x/a"]},
                {
                    "did": "did:op:closed",
                    "files": ["https://x/b"],
                    "allow_raw_algorithm": False,
                    "trusted_algorithms": ["did:op:good"],
                },
            ],
        )
    )
    with pytest.raises(RefusedError) as info:
        catalog.input_spec("did:op:nope", "datasets[1]")
    assert info.value.payload == {"datasets[1]": "did_not_found"}
    with pytest.raises(RefusedError) as info:
        catalog.check_algorithm("did:op:closed", "dataset", None)
    assert info.value.payload == {"dataset": "no_raw_algo_allowed"}
    with pytest.raises(RefusedError) as info:
        catalog.check_algorithm("did:op:closed", "dataset", "did:op:evil")
    assert info.value.payload == {"dataset": "not_trusted_algo"}
    catalog.check_algorithm("did:op:closed", "dataset", "did:op:good")
    catalog.check_algorithm("did:op:open", "dataset", None)


def test_startup_checks(tmp_path: Path) -> None:
    missing = settings(tmp_path, datasets=[{"did": "did:op:a", "files": [str(tmp_path / "no")]}])
    with pytest.raises(ConfigError, match="does not exist"):
        Catalog.load(missing)
    bad_did = settings(tmp_path, datasets=[{"did": "did:op:../etc", "files": ["https://x/a"]}])
    with pytest.raises(ConfigError, match="not a usable DID"):
        Catalog.load(bad_did)
    ddo = tmp_path / "ddo.json"
    ddo.write_text("[1]")
    bad_ddo = settings(
        tmp_path, datasets=[{"did": "did:op:a", "files": ["https://x/a"], "ddo": str(ddo)}]
    )
    with pytest.raises(ConfigError, match="not a JSON object"):
        Catalog.load(bad_ddo)
    ddo.write_text(json.dumps({"id": "did:op:a"}))
    assert Catalog.load(bad_ddo).input_spec("did:op:a", "dataset").ddo == {"id": "did:op:a"}
    bad_image = settings(
        tmp_path,
        algorithms=[
            {
                "did": "did:op:x",
                "rawcode": "print('hello world')",
                "container": {"image": "Not An Image", "entrypoint": "python $ALGO"},
            }
        ],
    )
    with pytest.raises(ConfigError, match="not an image name"):
        Catalog.load(bad_image)
