"""Each dialect's job runs under gVisor when its environment says `runtime = "runsc"`: the
served server of the README, a job started by the classic API, Ocean Node's dialect and
the Operator-Service API, each reporting the kernel it saw."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from tests.docker.test_sandbox import sandbox_registered
from tests.node_client import NodeClient, raw_algorithm
from tests.operator_client import OPERATOR_CONFIG, Provider
from tests.served import CONSUMER, Consumer, Served, running_server

pytestmark = pytest.mark.docker

WALLED = """
[[environments]]
id = "walled"
cpu = 0.5
max_jobs = 2
max_job_duration = 60
runtime = "runsc"
"""
KERNEL = "echo kernel $(uname -r)"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, busybox_image: str) -> Iterator[Served]:
    if not sandbox_registered():
        if os.environ.get("LOCALCOMPUTE_NO_SANDBOX") == "1":
            pytest.skip("LOCALCOMPUTE_NO_SANDBOX=1: this engine has no runsc")
        pytest.fail("the Docker engine has no runsc: scripts/run setup --sandbox", pytrace=False)
    root = tmp_path_factory.mktemp("walled")
    with running_server(root, environments_first=WALLED, extra=OPERATOR_CONFIG) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def algorithm_log(served: Served, job_id: str) -> str:
    [log] = (served.root / "var" / "jobs" / job_id).rglob("algorithm.log")
    return log.read_text()


async def test_every_dialects_job_runs_under_gvisor(
    served: Served, session: aiohttp.ClientSession
) -> None:
    consumer = Consumer(session, served.base_url)
    meta = {
        "rawcode": KERNEL,
        "container": {"image": "localcompute/busybox", "tag": "latest", "entrypoint": "sh $ALGO"},
    }
    code, [classic] = await consumer.start({"meta": meta}, environment="walled")
    assert code == 200, classic

    node = NodeClient(session, served.base_url)
    code, [noded] = await node.start(raw_algorithm(KERNEL), [], environment="walled")
    assert code == 200, noded

    provider = Provider(session, served.base_url)
    body = {
        "agreementId": f"walled-{time.time_ns()}",
        "owner": CONSUMER,
        "workflow": {
            "stages": [
                {
                    "index": 0,
                    "input": [],
                    "compute": {"Instances": 1, "namespace": "walled", "maxtime": 60},
                    "algorithm": {
                        "id": "did:op:a",
                        "rawcode": KERNEL,
                        "container": meta["container"],
                    },
                    "output": {},
                }
            ]
        },
    }
    code, [operated] = await provider.create(body)
    assert code == 200, operated

    assert (await consumer.wait_final(classic["jobId"]))["status"] == 70
    assert (await node.wait(noded["jobId"]))["status"] == 70
    assert (await provider.wait_final(operated["jobId"]))["status"] == 70
    for job_id in (classic["jobId"], noded["jobId"], operated["jobId"]):
        assert algorithm_log(served, job_id) == "kernel 4.4.0\n", job_id
