"""A provider shared by strangers, in each dialect: per-consumer job limits refuse a start
with 429 naming the limit (no nonce used, no job added), a queue deadline ends a waiting
job unrun in each dialect's words, and fair turns give another consumer's job the next
free slot ahead of one consumer's long queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from localcompute.web.auth import ProviderKey, sign
from tests.conftest import BUSYBOX_IMAGE
from tests.gates import Gate, Gates
from tests.node_client import NodeClient, raw_algorithm
from tests.operator_client import PROVIDER, Provider
from tests.served import CONSUMER, ENV, LOCAL_DID, OTHER_KEY, POLL, Consumer, Served, fake_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

OTHER = ProviderKey(OTHER_KEY).address
ENVIRONMENTS = """
[[environments]]
id = "narrow"
cpu = 0.5
max_jobs = 1
max_job_duration = 60
limits = { max_waiting = 2 }

[[environments]]
id = "deadline"
cpu = 0.5
max_jobs = 1
max_job_duration = 60
queue_max_wait = 0.2

[[environments]]
id = "shared"
cpu = 0.5
max_jobs = 1
max_job_duration = 60
"""
LIMITS = f"""exempt_loopback = true

[limits.addresses."{OTHER.lower()}"]
max_starts_per_hour = 2
"""
OPERATOR = f"""
[operator]
allowed_providers = ["{ProviderKey(PROVIDER).address.lower()}"]
"""
CONTAINER = {"image": BUSYBOX_IMAGE.split(":")[0], "tag": "latest", "entrypoint": "sh $ALGO"}


def classic_algorithm(rawcode: str) -> dict[str, Any]:
    return {"meta": {"rawcode": rawcode, "container": CONTAINER}}


def operator_body(env: str, rawcode: str, agreement: str) -> dict[str, Any]:
    return {
        "agreementId": agreement,
        "owner": CONSUMER,
        "workflow": {
            "stages": [
                {
                    "index": 0,
                    "input": [],
                    "compute": {"Instances": 1, "namespace": env, "maxtime": 60},
                    "algorithm": {"id": "did:op:a", "rawcode": rawcode, "container": CONTAINER},
                    "output": {},
                }
            ]
        },
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    root = tmp_path_factory.mktemp("limits")
    async with fake_server(
        root, environments_first=ENVIRONMENTS, limits=LIMITS, extra=OPERATOR
    ) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def consumer(served: Served, session: aiohttp.ClientSession) -> Consumer:
    return Consumer(session, served.base_url)


async def hold_slot(consumer: Consumer, env: str, gate: Gate) -> str:
    """A job of `env` that holds its one slot until `gate` opens."""
    code, [job] = await consumer.start(classic_algorithm(gate.wait), environment=env)
    assert code == 200, job
    while (await consumer.status(job["jobId"]))[0]["status"] < 40:
        await asyncio.sleep(POLL)
    return str(job["jobId"])


async def stop_all(consumer: Consumer, served: Served, session: aiohttp.ClientSession) -> None:
    """Every unfinished job of the consumer stopped at once (waiting ones never run)."""
    query = consumer.stop_query("", await consumer.next_nonce())
    async with session.put(served.base_url + "/api/services/compute", params=query) as r:
        assert r.status == 200, await r.text()


async def job_ids(consumer: Consumer) -> set[str]:
    return {j["jobId"] for j in await consumer.status()}


async def test_max_waiting_refuses_a_start_in_every_dialect_using_no_nonce(
    consumer: Consumer, served: Served, session: aiohttp.ClientSession, gates: Gates
) -> None:
    gate = gates()
    held = await hold_slot(consumer, "narrow", gate)
    waiting = []
    for _ in range(2):
        code, [job] = await consumer.start(classic_algorithm("true"), environment="narrow")
        assert code == 200
        waiting.append(job["jobId"])
    before = await job_ids(consumer)

    # The classic dialect: the same signed body, refused, then accepted elsewhere.
    nonce = await consumer.next_nonce()
    body = {
        "dataset": {"documentId": LOCAL_DID, "serviceId": "svc", "transferTxId": "0x"},
        "algorithm": classic_algorithm("true"),
        "environment": "narrow",
        "consumerAddress": consumer.address,
        "nonce": nonce,
        "signature": consumer.sign(f"{consumer.address}{LOCAL_DID}{nonce}"),
    }
    url = served.base_url + "/api/services/compute"
    async with session.post(url, json=body) as r:
        assert r.status == 429 and "Retry-After" not in r.headers
        answer = await r.json()
    assert answer["limit"] == "max_waiting" and answer["value"] == 2
    assert "has 2 jobs waiting" in answer["error"] and "environment narrow" in answer["error"]
    assert await consumer.next_nonce() == nonce, "the refused start used up its nonce"

    # The node dialect, signed by the same consumer.
    node = NodeClient(session, served.base_url)
    signed = await node.signed("freeStartCompute")
    node_body = {**node.body(raw_algorithm("true"), [], environment="narrow"), **signed}
    code, answer = await node.post("/api/services/freeCompute", node_body)
    assert code == 429 and answer["limit"] == "max_waiting", answer

    # The operator dialect: a provider starts a job for the same owner.
    provider = Provider(session, served.base_url)
    op_nonce = time.time_ns()
    op_body = {
        **operator_body("narrow", "true", "limits-op"),
        "nonce": op_nonce,
        "providerSignature": sign(f"{CONSUMER}{op_nonce}", PROVIDER),
    }
    code, answer = await provider.call("POST", "/api/v1/operator/compute", json=op_body)
    assert code == 429 and answer["limit"] == "max_waiting", answer
    assert await job_ids(consumer) == before, "a refused start added a job"

    # The queue is visible: in both environment views, and per consumer in /metrics.
    async with session.get(served.base_url + "/api/services/computeEnvironments") as r:
        classic_envs = await r.json()
    [narrow] = [e for e in classic_envs[next(iter(classic_envs))] if e["id"] == "narrow"]
    assert (narrow["currentJobs"], narrow["queuedJobs"]) == (1, 2)
    async with session.get(served.base_url + "/node/api/services/computeEnvironments") as r:
        [node_narrow] = [e for e in await r.json() if e["id"] == "narrow"]
    assert node_narrow["queuedJobs"] == 2
    async with session.get(served.base_url + "/metrics") as r:
        metrics = await r.text()
    me = consumer.address.lower()
    assert f'localcompute_consumer_jobs{{consumer="{me}",state="waiting"}} 2.0' in metrics
    assert f'localcompute_consumer_jobs{{consumer="{me}",state="running"}} 1.0' in metrics
    assert 'localcompute_refusals_total{limit="max_waiting"} 3.0' in metrics

    # Each refused request, sent again as it was to an environment with room, is
    # accepted: its nonce was never used.
    async with session.post(url, json={**body, "environment": ENV}) as r:
        assert r.status == 200, await r.text()
        [classic_job] = await r.json()
    node_body["environment"] = ENV
    code, [node_job] = await node.post("/api/services/freeCompute", node_body)
    assert code == 200
    op_body["workflow"]["stages"][0]["compute"]["namespace"] = ENV
    code, [op_job] = await provider.call("POST", "/api/v1/operator/compute", json=op_body)
    assert code == 200

    await gate.open()
    await stop_all(consumer, served, session)
    for job_id in [held, *waiting, classic_job["jobId"], op_job["jobId"]]:
        assert (await consumer.wait_final(job_id))["status"] == 70
    await node.wait(node_job["jobId"])


async def test_starts_per_hour_of_an_address_row_says_when_to_try_again(
    served: Served, session: aiohttp.ClientSession
) -> None:
    other = Consumer(session, served.base_url, OTHER_KEY)
    started = []
    for _ in range(2):
        code, [job] = await other.start(classic_algorithm("true"))
        assert code == 200
        started.append(job["jobId"])
    nonce = await other.next_nonce()
    body = {
        "dataset": {"documentId": LOCAL_DID, "serviceId": "svc", "transferTxId": "0x"},
        "algorithm": classic_algorithm("true"),
        "environment": ENV,
        "consumerAddress": other.address,
        "nonce": nonce,
        "signature": other.sign(f"{other.address}{LOCAL_DID}{nonce}"),
    }
    async with session.post(served.base_url + "/api/services/compute", json=body) as r:
        assert r.status == 429
        answer = await r.json()
        retry = int(r.headers["Retry-After"])
    assert answer["limit"] == "max_starts_per_hour" and answer["value"] == 2
    assert 3590 <= retry <= 3600 and f"[limits] for {other.address}" in answer["error"]
    for job_id in started:
        await other.wait_final(job_id)


async def test_classic_and_operator_show_a_job_past_its_environments_deadline_as_failed(
    consumer: Consumer, served: Served, session: aiohttp.ClientSession, gates: Gates
) -> None:
    gate = gates()
    held = await hold_slot(consumer, "deadline", gate)
    code, [classic] = await consumer.start(classic_algorithm("echo never"), environment="deadline")
    assert code == 200
    provider = Provider(session, served.base_url)
    code, [operated] = await provider.create(operator_body("deadline", "echo never", "deadline"))
    assert code == 200

    job = await consumer.wait_final(classic["jobId"], timeout=10)
    assert (job["status"], job["statusText"]) == (70, "Job expired in queue")
    assert job["dateFinished"] and not job["algorithmLogUrl"] if "algorithmLogUrl" in job else True
    op = await provider.wait_final(operated["jobId"], timeout=10)
    assert (op["status"], op["statusText"]) == (70, "Job expired in queue")
    assert (await consumer.status(held))[0]["status"] == 40, "the running job goes on"
    await gate.open()
    await consumer.wait_final(held)


async def test_node_job_expires_in_queue_with_status_2(
    consumer: Consumer, served: Served, session: aiohttp.ClientSession, gates: Gates
) -> None:
    gate = gates()
    held = await hold_slot(consumer, "shared", gate)
    node = NodeClient(session, served.base_url)
    code, [asked] = await node.start(
        raw_algorithm("echo never"), [], environment="shared", queueMaxWaitTime=0.2
    )
    assert code == 200
    job = await node.wait(asked["jobId"], timeout=10)
    assert (job["status"], job["statusText"]) == (2, "Job expired in queue")
    assert job["algoStartTimestamp"] == "0"
    assert "waited" in job["terminationDetails"]["detail"]
    async with session.get(served.base_url + "/metrics") as r:
        assert 'localcompute_queue_deadlines_total{environment="shared"} 1.0' in await r.text()
    await gate.open()
    await consumer.wait_final(held)


async def test_another_consumers_job_takes_the_next_free_slot_ahead_of_a_long_queue(
    consumer: Consumer, served: Served, session: aiohttp.ClientSession, gates: Gates
) -> None:
    first, second = gates(), gates()
    held = await hold_slot(consumer, "shared", first)
    flood = []
    for _ in range(3):
        code, [job] = await consumer.start(classic_algorithm("true"), environment="shared")
        assert code == 200
        flood.append(job["jobId"])
    other = Consumer(session, served.base_url, bytes.fromhex("44" * 32))
    code, [late] = await other.start(classic_algorithm(second.wait), environment="shared")
    assert code == 200
    await first.open()
    while (await other.status(late["jobId"]))[0]["status"] < 40:
        await asyncio.sleep(POLL)
    # The other consumer's one job runs while every job of the long queue still waits.
    assert [(await consumer.status(j))[0]["status"] for j in flood] == [1] * 3
    await stop_all(consumer, served, session)  # the flood ends unrun
    await second.open()
    for job_id in [held, *flood]:
        assert (await consumer.wait_final(job_id))["status"] == 70
    await other.wait_final(late["jobId"])
