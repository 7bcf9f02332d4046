"""The compute flow through ocean.py's own `DataServiceProvider` (ocean-lib 3.1.2).

Run by tests/clients/test_ocean_py.py with the Python of the ocean.py virtualenv,
never the project's: ocean-lib pins web3 6.11.4 and eciespy 0.4.1. It calls the
client's API exactly as a user would, writes what each call answered to the
report file (JSON), and lets any exception surface with the client's traceback;
the test asserts on the report.

    python ocean_py_flow.py REPORT --provider URL --key HEX --did DID --image IMAGE
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from typing import Any

from eth_account import Account
from ocean_lib.assets.ddo import DDO
from ocean_lib.data_provider.data_service_provider import DataServiceProvider as DSP
from ocean_lib.exceptions import DataProviderException
from ocean_lib.models.compute_input import ComputeInput
from ocean_lib.services.service import Service
from ocean_lib.structures.algorithm_metadata import AlgorithmMetadata

CHAIN_ID = 8996
FINAL = (31, 32, 70)
# Reads the dataset, writes a result, and prints to its log: all three come back.
MAIN_ALGORITHM = (
    'echo "ocean.py was here"; '
    'for f in /data/inputs/*/0; do cat "$f"; done > "$OUTPUTS/copy.txt"; '
    'echo "$DIDS" > "$OUTPUTS/dids.json"'
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("report")
    parser.add_argument("--provider", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--did", required=True)
    parser.add_argument("--image", required=True, help="image:tag of a shell image")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    try:
        flow(args, report)
    finally:
        with open(args.report, "w") as out:
            json.dump(report, out, indent=1)


def flow(args: argparse.Namespace, report: dict[str, Any]) -> None:
    consumer = Account.from_key(args.key)
    service = Service(
        service_id="0",
        service_type="compute",
        service_endpoint=args.provider,
        datatoken="0x" + "00" * 20,
        files=[],
        timeout=0,
        compute_values={},
    )
    dataset = ComputeInput(DDO(did=args.did), service, transfer_tx_id="0x" + "ab" * 32)
    image, _, tag = args.image.partition(":")

    def raw(rawcode: str) -> AlgorithmMetadata:
        return AlgorithmMetadata(
            {
                "rawcode": rawcode,
                "language": "sh",
                "container": {"entrypoint": "sh $ALGO", "image": image, "tag": tag or "latest"},
            }
        )

    def start(rawcode: str) -> dict[str, Any]:
        job: dict[str, Any] = DSP.start_compute_job(
            service, consumer, dataset, env_id, algorithm_meta=raw(rawcode)
        )
        return job

    def status(job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = DSP.compute_job_status(args.did, job_id, service, consumer)
        return job

    def wait(job_id: str, until: tuple[int, ...] = FINAL) -> dict[str, Any]:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            job = status(job_id)
            if job["status"] in until:
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} did not reach {until}: {job}")

    # 1. The environments, keyed by chain; the free one is what a consumer picks.
    envs = DSP.get_c2d_environments(args.provider, CHAIN_ID)
    report["environments"] = envs
    env_id = next(e["id"] for e in envs if float(e["priceMin"]) == 0)
    report["env_id"] = env_id

    # 2. initializeCompute, chain-less: validOrder and no provider fee.
    response = DSP.initialize_compute(
        [dataset.as_dictionary()],
        raw(MAIN_ALGORITHM).as_dictionary(),
        args.provider,
        consumer.address,
        env_id,
        int(time.time()) + 3600,
    )
    report["initialize"] = response.json()

    # 3. The whole flow of one job: start, status until 70, every result's bytes.
    started = start(MAIN_ALGORITHM)
    report["started"] = started
    job_id = started["jobId"]
    done = wait(job_id)
    report["done"] = done
    report["results"] = [
        {
            **result,
            "bytes": base64.b64encode(
                DSP.compute_job_result(job_id, i, service, consumer)
            ).decode(),
        }
        for i, result in enumerate(done["results"])
    ]

    # 4. Stop of the finished job changes nothing; delete removes it.
    report["stop_finished"] = DSP.stop_compute_job(args.did, job_id, service, consumer)
    report["delete"] = DSP.delete_compute_job(args.did, job_id, service, consumer)
    report["after_delete"] = status(job_id)
    try:
        DSP.compute_job_result(job_id, 0, service, consumer)
        report["result_after_delete"] = "downloaded"
    except DataProviderException as e:
        report["result_after_delete"] = str(e)

    # 5. Raw code of a few characters is a real program: `true` runs to 70.
    report["true"] = wait(start("true")["jobId"])

    # 6. A running job stops when asked.
    sleeper = start("sleep 60")["jobId"]
    report["sleeper_running"] = wait(sleeper, until=(40, *FINAL))
    report["stop_running"] = DSP.stop_compute_job(args.did, sleeper, service, consumer)
    report["stopped"] = wait(sleeper)
    report["delete_stopped"] = DSP.delete_compute_job(args.did, sleeper, service, consumer)


if __name__ == "__main__":
    main()
