"""ocean.py 3.1.2's `DataServiceProvider`, unmodified, drives the whole compute flow.

The first call a new user makes with it, a raw algorithm through `AlgorithmMetadata`,
was refused before (ocean.py sends `url: ""` beside rawcode): only the real client
showed it. The flow runs in the client's own Python 3.10 virtualenv.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from localcompute.core.receipt import read_receipt
from tests.clients.conftest import FLOWS, run_flow
from tests.clients.envs import OceanPy
from tests.conftest import BUSYBOX_IMAGE
from tests.served import CONSUMER, CONSUMER_KEY, ENV, LOCAL_DID, PROVIDER_ADDRESS, Served

# A cold run installs the client first (about two minutes); a warm one takes seconds.
pytestmark = [pytest.mark.docker, pytest.mark.clients, pytest.mark.timeout(1200)]


def by_name(results: list[dict[str, Any]]) -> dict[str, tuple[str, bytes]]:
    return {r["filename"]: (r["type"], base64.b64decode(r["bytes"])) for r in results}


def test_ocean_py_runs_the_whole_compute_flow(
    ocean_py: OceanPy, served: Served, tmp_path: Path
) -> None:
    report_path = tmp_path / "report.json"
    run = run_flow(
        [
            str(ocean_py.python),
            str(FLOWS / "ocean_py_flow.py"),
            str(report_path),
            "--provider",
            served.base_url,
            "--key",
            "0x" + CONSUMER_KEY.hex(),
            "--did",
            LOCAL_DID,
            "--image",
            BUSYBOX_IMAGE,
        ],
        report_path,
        served,
    )
    report = run.report

    # It read the environments of its chain and chose the free one, not the first.
    assert [e["id"] for e in report["environments"]] == ["paid", ENV]
    assert report["env_id"] == ENV
    # initializeCompute is chain-less: the order is valid and there is no fee to pay.
    assert report["initialize"] == {"datasets": [{"validOrder": "0x" + "ab" * 32}]}

    started, done = report["started"], report["done"]
    assert started["owner"] == CONSUMER and started["inputDID"] == [LOCAL_DID]
    assert (done["status"], done["statusText"], done["terminationReason"], done["exitCode"]) == (
        70,
        "Job completed",
        "completed",
        0,
    )
    results = by_name(report["results"])
    assert list(results) == [
        "copy.txt",
        "dids.json",
        "algorithm.log",
        "configure.log",
        "filter.log",
        "publish.log",
        "receipt.json",
    ]
    # Every result ocean.py downloaded is the one the receipt, signed by the provider, names.
    receipt = read_receipt(results["receipt.json"][1], provider=PROVIDER_ADDRESS)
    assert {s.name: s.sha256 for s in receipt.subjects} == {
        name: hashlib.sha256(body).hexdigest()
        for name, (_, body) in results.items()
        if name != "receipt.json"
    }
    assert results["copy.txt"] == ("output", b"local dataset\n")
    assert json.loads(results["dids.json"][1]) == [LOCAL_DID.removeprefix("did:op:")]
    assert results["algorithm.log"] == ("algorithmLog", b"ocean.py was here\n")
    assert results["configure.log"][0] == "configrationLog"
    assert [r["filesize"] for r in report["results"]] == [len(body) for _, body in results.values()]

    # Stop of a finished job changes nothing; delete removes it, as the API then says.
    assert report["stop_finished"]["terminationReason"] == "completed"
    assert report["delete"]["removed"] == 1
    assert (report["after_delete"]["removed"], report["after_delete"]["results"]) == (1, [])
    assert "No results" in report["result_after_delete"]

    # Raw code of four characters runs; a running job stops when asked.
    assert (report["true"]["status"], report["true"]["terminationReason"]) == (70, "completed")
    assert report["sleeper_running"]["status"] == 40
    assert report["stopped"]["terminationReason"] == "stopped"
    assert report["delete_stopped"]["removed"] == 1
    # The client signed every call with a nonce it read from the server.
    assert "signing message with nonce" in run.output
