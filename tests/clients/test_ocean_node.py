"""ocean.js 8.x's own `ProviderInstance`, unmodified, drives free compute against /node.

8.6.2 (the latest) runs the whole flow: environments, nonce, a job whose log lines
are streamed while it runs, its results whole and from an offset, a running job
stopped, and an auth token that starts, watches and downloads a job until it is
invalidated and refused. 8.0.0 (the VS Code extension pins 8.0.x) runs start,
status and results. The wallet has no provider: no chain, no RPC.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from pathlib import Path
from typing import Any

import pytest

from localcompute.core.receipt import read_receipt
from tests.clients.conftest import FLOWS, ocean_js, run_flow
from tests.clients.envs import Builds
from tests.conftest import BUSYBOX_IMAGE
from tests.served import CONSUMER, CONSUMER_KEY, ENV, PROVIDER_ADDRESS, Served

pytestmark = [pytest.mark.docker, pytest.mark.clients, pytest.mark.timeout(1200)]

DATASET = b"dataset behind a URL\n"  # what tests.served's file server answers


def flow(builds: Builds, version: str, served: Served, tmp_path: Path, mode: str) -> Any:
    client = ocean_js(builds, version)
    report = tmp_path / "report.json"
    port = served.extra["files"].server_port
    command = [
        client.node,
        str(FLOWS / "ocean_node_flow.cjs"),
        str(report),
        str(client.modules),
        served.base_url + "/node",
        "0x" + CONSUMER_KEY.hex(),
        BUSYBOX_IMAGE,
        f"http://127.0.0.1:{port}/data.csv",
        mode,
    ]
    return run_flow(command, report, served).report


def untar(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def check_main_job(report: dict[str, Any], version: str) -> None:
    assert report["lib_version"] == version
    assert [e["id"] for e in report["environments"]] == ["paid", ENV]
    assert "free" not in report["environments"][0]
    assert report["env_id"] == ENV and report["address"] == CONSUMER
    started = report["started"]
    assert started["answer_is_array"] and started["job"]["owner"] == CONSUMER
    done = report["done"]
    assert done["jobId"] == started["job"]["jobId"]
    assert (done["status"], done["statusText"]) == (70, "Job finished")
    assert done["terminationDetails"]["exitCode"] == 0
    assert "Running algorithm " in [s["statusText"] for s in report["statuses"]]
    # Straight to the final state, never "settling".
    assert report["statuses"][-1]["status"] == 70
    assert 71 not in [s["status"] for s in report["statuses"]]
    assert [r["filename"] for r in done["results"]] == [
        "configuration.log",
        "algorithm.log",
        "outputs.tar",
        "receipt.json",
    ]
    tar, log = report["results"]["tar"], report["results"]["log"]
    tar_bytes = base64.b64decode(tar["base64"])
    # The receipt, fetched by ocean.js, signed by the node as ethers and we both see it;
    # its outputs.tar is the archive ocean.js downloaded.
    signed = report["results"]["receipt"]
    receipt = read_receipt(base64.b64decode(signed["base64"]), provider=PROVIDER_ADDRESS)
    assert signed["ethers_signer"] == receipt.signer
    assert [(s.name, s.sha256) for s in receipt.outputs] == [
        ("outputs.tar", hashlib.sha256(tar_bytes).hexdigest())
    ]
    assert len(tar_bytes) == tar["entry"]["filesize"]
    assert untar(tar_bytes) == {
        "outputs/result.txt": b"ocean node was here\n",
        "outputs/copy.txt": DATASET,
    }
    log_bytes = base64.b64decode(log["base64"])
    assert log_bytes == b"".join(f"line {i}\n".encode() for i in range(1, 6))
    # From an offset, ocean.js sends Range: bytes=N-; the rest comes, not byte 0 again.
    assert base64.b64decode(tar["offset_base64"]) == tar_bytes[tar["offset"] :]
    assert base64.b64decode(log["offset_base64"]) == log_bytes[log["offset"] :]


def test_ocean_js_8_6_2_runs_free_compute_with_live_logs_stop_and_tokens(
    client_builds: Builds, served: Served, tmp_path: Path
) -> None:
    report = flow(client_builds, "8.6.2", served, tmp_path, "full")
    check_main_job(report, "8.6.2")

    logs = report["logs"]
    assert logs["text"] == "".join(f"line {i}\n" for i in range(1, 6))
    # The lines arrive as the algorithm prints them, one a second, well before the end.
    first, last = logs["chunks"][0]["at"], logs["chunks"][-1]["at"]
    assert last - first >= 2500, logs["chunks"]
    assert first <= report["finished_at"] - 2500

    stop = report["stop"]
    assert stop["running"]["job"]["status"] == 40
    [answer] = stop["answer"]
    assert answer["jobId"] == stop["started"]["job"]["jobId"] and answer["stopRequested"]
    assert stop["done"]["status"] == 70
    assert stop["done"]["terminationDetails"]["reason"] == "stopped"
    assert stop["finished_at"] - stop["asked_at"] < 15000  # not the 60 s it would run

    token = report["token"]
    assert token["payload"]["address"] == CONSUMER
    assert token["started"]["job"]["owner"] == CONSUMER
    assert token["done"]["status"] == 70
    # ocean.js fetches a token session's results unsigned: allowed for this job.
    assert token["result"]["ok"], token["result"]
    assert untar(base64.b64decode(token["result"]["base64"])) == {
        "outputs/result.txt": b"ocean node was here\n"
    }
    assert token["invalidate"] == {"success": True}
    refused = token["after_invalidate"]
    assert refused["threw"] and "invalidated" in refused["error"]


def test_ocean_js_8_6_2_queue_max_wait_time_ends_a_job_that_waited_too_long(
    client_builds: Builds, served: Served, tmp_path: Path
) -> None:
    """freeComputeStart's queueMaxWaitTime, as ocean.js 8.6.2 sends it: the job waits while
    long jobs hold every slot, and ends unrun once its time is up, in the node's words."""
    report = flow(client_builds, "8.6.2", served, tmp_path, "queue")
    queue = report["queue"]
    started, done = queue["started"], queue["done"]
    assert started["queueMaxWaitTime"] == 2 and started["status"] == 1
    assert queue["statuses"][0]["status"] == 1
    assert (done["status"], done["statusText"]) == (2, "Job expired in queue")
    assert done["algoStartTimestamp"] == "0" and done["terminationDetails"]["exitCode"] is None
    assert "never ran" in done["terminationDetails"]["detail"]
    waited = queue["finished_at"] - queue["asked_at"]
    assert 2000 <= waited < 10000, waited
    # The jobs that held the slots ran on, untouched, until they were stopped.
    assert [h["status"] for h in queue["holders_during"]] == [40] * len(queue["holders_during"])


def test_ocean_js_8_0_0_starts_watches_and_downloads(
    client_builds: Builds, served: Served, tmp_path: Path
) -> None:
    report = flow(client_builds, "8.0.0", served, tmp_path, "short")
    check_main_job(report, "8.0.0")
