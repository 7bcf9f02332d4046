"""ocean.js 3.x's `ProviderInstance`, unmodified, drives the compute flow with node.

3.3.0 runs the whole flow (environments, initialize, start, status, result URLs
and downloads, stop, delete). 3.1.4, the oldest the README claims, and 3.4.6, the
last 3.x on npm, run start, status and results: from 3.3.3 on, ocean.js signs a
stop without a nonce (a signature anyone could replay), which this server refuses.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest

from localcompute.core.receipt import read_receipt
from tests.clients.conftest import FLOWS, run_flow
from tests.clients.envs import Builds, ClientSetupError
from tests.conftest import BUSYBOX_IMAGE
from tests.served import CONSUMER, CONSUMER_KEY, ENV, LOCAL_DID, PROVIDER_ADDRESS, Served

# A cold run installs the clients first (about two minutes); a warm one takes seconds.
pytestmark = [pytest.mark.docker, pytest.mark.clients, pytest.mark.timeout(1200)]


def flow(client_builds: Builds, version: str, served: Served, tmp_path: Path, mode: str) -> Any:
    try:
        client = client_builds.ocean_js(version)
    except ClientSetupError as e:
        pytest.fail(f"ocean.js {version} could not be installed: {e}", pytrace=False)
    report = tmp_path / "report.json"
    command = [
        client.node,
        str(FLOWS / "ocean_js_flow.cjs"),
        str(report),
        str(client.modules),
        served.base_url,
        "0x" + CONSUMER_KEY.hex(),
        LOCAL_DID,
        BUSYBOX_IMAGE,
        mode,
    ]
    return run_flow(command, report, served).report


def check_finished_job(report: dict[str, Any]) -> None:
    assert [e["id"] for e in report["environments"]["8996"]] == ["paid", ENV]
    assert report["env_id"] == ENV
    assert report["started"]["owner"] == CONSUMER
    done = report["done"]
    assert (done["status"], done["terminationReason"], done["exitCode"]) == (70, "completed", 0)
    results = {r["filename"]: r for r in report["results"]}
    assert list(results) == [
        "copy.txt",
        "algorithm.log",
        "configure.log",
        "filter.log",
        "publish.log",
        "receipt.json",
    ]
    # What ocean.js downloaded is what the receipt, signed by the provider, names.
    receipt = read_receipt(base64.b64decode(results["receipt.json"]["bytes"]), PROVIDER_ADDRESS)
    assert {s.name: s.sha256 for s in receipt.subjects} == {
        name: hashlib.sha256(base64.b64decode(r["bytes"])).hexdigest()
        for name, r in results.items()
        if name != "receipt.json"
    }
    for result in results.values():
        assert result["http_status"] == 200
        assert result["disposition"] == f"attachment;filename={result['filename']}"
        assert len(base64.b64decode(result["bytes"])) == result["filesize"]
    assert base64.b64decode(results["copy.txt"]["bytes"]) == b"local dataset\n"
    assert base64.b64decode(results["algorithm.log"]["bytes"]) == b"ocean.js was here\n"


def test_ocean_js_3_3_0_runs_the_whole_compute_flow(
    client_builds: Builds, served: Served, tmp_path: Path
) -> None:
    report = flow(client_builds, "3.3.0", served, tmp_path, "full")

    check_finished_job(report)
    # Chain-less: an order placeholder (ocean.js sends no transferTxId here) and no fee.
    placeholder = "0x" + hashlib.sha256(LOCAL_DID.encode()).hexdigest()
    assert report["initialize"] == {"datasets": [{"validOrder": placeholder}]}
    assert report["sleeper_running"]["status"] == 40
    assert report["stopped"]["terminationReason"] == "stopped"
    # computeDelete of ocean.js 3.x sends no nonce: the server takes the stored one + 1.
    assert report["delete"][0]["removed"] == 1
    assert (report["after_delete"]["removed"], report["after_delete"]["results"]) == (1, [])
    assert report["result_after_delete"]["http_status"] == 404
    assert report["delete_stopped"][0]["removed"] == 1


@pytest.mark.parametrize("version", ["3.1.4", "3.4.6"])
def test_oldest_and_newest_classic_ocean_js_start_status_and_results(
    client_builds: Builds, served: Served, tmp_path: Path, version: str
) -> None:
    report = flow(client_builds, version, served, tmp_path, "short")

    check_finished_job(report)
    if version == "3.4.6":
        # From 3.3.3 on, ocean.js signs a stop over address + jobId only, no nonce: a
        # signature anyone who saw it could replay. Refused, and the answer says why.
        assert "Invalid signature" in report["stop_finished"]["refused"]
    else:
        [stopped] = report["stop_finished"]
        assert (stopped["status"], stopped["terminationReason"]) == (70, "completed")
