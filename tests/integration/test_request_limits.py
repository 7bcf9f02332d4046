"""Back-pressure in each dialect, on a real port over the FakeRuntime: past a bucket's burst
a 429 with Retry-After in the dialect's error shape, that used up no nonce and added no
job; a polite poller never limited while a fast one is; a forged address drains nobody's
bucket; and who is exempt. Each test has a server of its own (fresh buckets, ~50 ms)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from localcompute.client import Client, Key
from localcompute.web.auth import ProviderKey, sign
from tests.conftest import BUSYBOX_IMAGE
from tests.node_client import NodeClient, raw_algorithm
from tests.operator_client import Provider
from tests.served import ENV, LOCAL_DID, Consumer, Served, fake_server

# Rates scaled up from the defaults (2 starts and 5 reads a second) so that a refill is a
# fraction of a second; bursts small, so that a handful of requests meets them.
LIMITS = """
starts_per_second = 4
start_burst = 1
reads_per_second = 20
read_burst = 3
"""
RAW = raw_algorithm("true")["meta"]
FAST = 60  # requests a fast poller sends back to back
OPERATOR_ENV = """
[[environments]]
id = "withgpu"
cpu = 0.5
max_jobs = 2
max_job_duration = 60
"""


def fresh_key() -> bytes:
    return os.urandom(32)


@asynccontextmanager
async def server(tmp: Any, limits: str = LIMITS, **overrides: Any) -> AsyncIterator[Served]:
    async with fake_server(tmp, limits=limits, **overrides) as served:
        yield served


@asynccontextmanager
async def session_from(ip: str = "127.0.0.1") -> AsyncIterator[aiohttp.ClientSession]:
    """A client session whose requests come from `ip` (any of 127.0.0.0/8 reaches the
    server): each test's unsigned requests have a client IP of their own."""
    connector = aiohttp.TCPConnector(local_addr=(ip, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


async def send(
    session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any, dict[str, str]]:
    async with session.request(method, url, **kwargs) as r:
        body = await r.json() if r.content_type == "application/json" else await r.read()
        return r.status, body, dict(r.headers)


def assert_too_many(answer: tuple[int, Any, dict[str, str]], limit: str, value: float) -> float:
    """A 429 in the {"error": …} shape every dialect shares; the seconds it says to wait."""
    status, body, headers = answer
    assert status == 429, body
    assert isinstance(body["error"], str) and limit in body["error"]
    assert (body["limit"], body["value"]) == (limit, value)
    assert 0 < body["retryAfter"] <= 1 / value + 0.01
    assert headers["Retry-After"] == "1"  # whole seconds, rounded up
    return float(body["retryAfter"])


def provider_start(consumer: Consumer, nonce: int) -> dict[str, Any]:
    return {
        "dataset": {"documentId": LOCAL_DID, "serviceId": "svc", "transferTxId": "0xorder"},
        "algorithm": {"meta": RAW},
        "environment": ENV,
        "consumerAddress": consumer.address,
        "nonce": nonce,
        "signature": consumer.sign(f"{consumer.address}{LOCAL_DID}{nonce}"),
    }


def signed_status(consumer: Consumer, job_id: str, nonce: int = 1) -> dict[str, str]:
    """ocean.py's signed status: over address + jobId + documentId + nonce; no nonce used."""
    return {
        "consumerAddress": consumer.address,
        "jobId": job_id,
        "nonce": str(nonce),
        "signature": consumer.sign(f"{consumer.address}{job_id}{nonce}"),
    }


async def wait_final(consumer: Consumer, job_ids: list[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        jobs = {j["jobId"]: j for j in await consumer.status()}
        if all(jobs[i]["status"] in (31, 32, 70) for i in job_ids):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"jobs {job_ids} did not finish")


async def poll(
    session: aiohttp.ClientSession, url: str, params: dict[str, str], times: int, every: float
) -> list[int]:
    codes = []
    for _ in range(times):
        async with session.get(url, params=params) as r:
            codes.append(r.status)
        await asyncio.sleep(every)
    return codes


# -- the provider API -------------------------------------------------------------


async def test_a_start_past_the_burst_is_429_uses_no_nonce_and_adds_no_job(tmp_path: Any) -> None:
    async with server(tmp_path) as served, session_from() as session:
        consumer = Consumer(session, served.base_url, fresh_key())
        url = served.base_url + "/api/services/compute"
        status, [first], _ = await send(session, "POST", url, json=provider_start(consumer, 1))
        assert status == 200
        refused = await send(session, "POST", url, json=provider_start(consumer, 2))
        wait = assert_too_many(refused, "starts_per_second", 4)
        assert await consumer.next_nonce() == 2, "the refused start used up no nonce"
        assert len(await consumer.status()) == 1, "and added no job"

        await asyncio.sleep(wait)
        status, [second], _ = await send(session, "POST", url, json=provider_start(consumer, 2))
        assert status == 200, "the same nonce, once a token is there"
        await wait_final(consumer, [first["jobId"], second["jobId"]])


async def test_a_forged_address_drains_nobodys_bucket(tmp_path: Any) -> None:
    async with server(tmp_path) as served, session_from() as session:
        victim = Consumer(session, served.base_url, fresh_key())
        forger = Consumer(session, served.base_url, fresh_key())
        url = served.base_url + "/api/services/compute"
        for nonce in range(1, 11):
            forged = provider_start(victim, nonce)
            forged["signature"] = forger.sign(f"{victim.address}{LOCAL_DID}{nonce}")
            status, body, _ = await send(session, "POST", url, json=forged)
            assert status == 400 and "signature" in body["errors"], body
            params = signed_status(victim, "some-job", nonce)
            params["signature"] = forger.sign(f"{victim.address}some-job{nonce}")
            assert (await send(session, "GET", url, params=params))[0] == 400
        # Both buckets are still whole: the victim's start, and its burst of 3 reads.
        status, [job], _ = await send(session, "POST", url, json=provider_start(victim, 1))
        assert status == 200
        for _ in range(3):
            status, _, _ = await send(
                session, "GET", url, params=signed_status(victim, "no-such-job")
            )
            assert status == 200
        await wait_final(victim, [job["jobId"]])


async def test_a_polite_poller_is_never_limited_and_a_fast_one_is(tmp_path: Any) -> None:
    """At 40 reads a second per job (the default's 5, scaled by 8), a poll of one's job
    every 1/8 s (the default's one a second) while another address polls its job back to
    back, then made-up job ids, which all share the address's one other bucket."""
    polite_limits = LIMITS.replace("reads_per_second = 20", "reads_per_second = 40")
    async with server(tmp_path, limits=polite_limits) as served, session_from() as session:
        polite, fast = (Consumer(session, served.base_url, fresh_key()) for _ in range(2))
        url = served.base_url + "/api/services/compute"
        jobs = {}
        for consumer in (polite, fast):
            _, [job], _ = await send(session, "POST", url, json=provider_start(consumer, 1))
            jobs[consumer] = job["jobId"]

        began = time.monotonic()
        polite_codes, fast_codes = await asyncio.gather(
            poll(session, url, signed_status(polite, jobs[polite]), times=4, every=1 / 8),
            poll(session, url, signed_status(fast, jobs[fast]), times=FAST, every=0),
        )
        took = time.monotonic() - began
        assert polite_codes == [200] * 4
        # The burst, what the time it took brings, and no more: the rest were refused.
        assert set(fast_codes) == {200, 429}
        assert fast_codes.count(200) <= 3 + 40 * took + 1 < FAST / 2, (took, fast_codes)

        # Signed first and sent at once: one after another, on a loaded machine, each
        # answer can take longer than the 1/40 s the bucket needs to refill.
        made_up_reads = [signed_status(polite, f"no-{i}") for i in range(10)]
        made_up = await asyncio.gather(
            *(send(session, "GET", url, params=params) for params in made_up_reads)
        )
        codes = [a[0] for a in made_up]
        assert codes.count(429) >= 5, ("made-up ids share one bucket", codes)
        assert_too_many(next(a for a in made_up if a[0] == 429), "reads_per_second", 40)
        for consumer, job_id in jobs.items():
            await wait_final(consumer, [job_id])


# -- Ocean Node's dialect ----------------------------------------------------------


async def test_node_a_start_past_the_burst_is_429_and_a_token_poller_is_limited(
    tmp_path: Any,
) -> None:
    async with server(tmp_path) as served, session_from() as session:
        node = NodeClient(session, served.base_url, fresh_key())
        port = served.extra["files"].server_port
        dataset = [
            {
                "fileObject": {
                    "type": "url",
                    "url": f"http://127.0.0.1:{port}/d.csv",
                    "method": "GET",
                }
            }
        ]
        algorithm = {"meta": RAW}
        token = await node.token()  # a signed write: the burst of 1
        body = {**node.body(algorithm, dataset), **await node.signed("freeStartCompute")}
        start = node.url("/api/services/freeCompute")
        refused = await send(session, "POST", start, json=body)
        wait = assert_too_many(refused, "starts_per_second", 4)
        assert await node.nonce() == 1, "the refused start used up no nonce"
        code, listed = await node.status(headers={"Authorization": token})
        assert (code, listed) == (200, []), "and added no job"

        await asyncio.sleep(wait)
        status, [job], _ = await send(session, "POST", start, json=body)
        assert status == 200, "the same nonce, once a token is there"

        url = node.url("/api/services/compute")
        params = {"consumerAddress": node.address, "jobId": job["jobId"]}
        codes = [
            (await send(session, "GET", url, params=params, headers={"Authorization": token}))[0]
            for _ in range(FAST)
        ]
        assert codes.count(429) > FAST / 2, codes
        await node.wait(job["jobId"])


# -- the Operator-Service API ------------------------------------------------------


def operator_body(served: Served, agreement: str) -> dict[str, Any]:
    files = served.extra["files"]
    host, port = files.server_address[:2]
    stage = {
        "index": 0,
        "input": [{"index": 0, "id": "did:op:aa", "url": [f"http://{host}:{port}/0.csv"]}],
        "compute": {"Instances": 1, "namespace": "withgpu", "maxtime": 60},
        "algorithm": {
            "rawcode": "true",
            "container": {"image": BUSYBOX_IMAGE.split(":")[0], "entrypoint": "sh $ALGO"},
        },
        "output": {},
    }
    return {"agreementId": agreement, "owner": "0x22", "workflow": {"stages": [stage]}}


async def operator_wait(provider: Provider, job_ids: list[str]) -> None:
    """Polled 10 times a second: within the signer's 20 reads a second per job."""
    for job_id in job_ids:
        deadline = time.monotonic() + 30
        while (await provider.status(job_id))["status"] not in (31, 32, 70):
            assert time.monotonic() < deadline, f"job {job_id} did not finish"
            await asyncio.sleep(0.1)


async def test_operator_calls_from_loopback_are_limited_per_signing_provider(
    tmp_path: Any,
) -> None:
    """No allowed_providers: a local provider calls, and its key is its bucket."""
    async with server(tmp_path, extra=OPERATOR_ENV) as served, session_from() as session:
        first = Provider(session, served.base_url, fresh_key())
        code, [job] = await first.create(operator_body(served, "a0"))
        assert code == 200, job
        jobs = [job["jobId"]]
        nonce = time.time_ns()
        body = {
            **operator_body(served, "a1"),
            "nonce": nonce,
            "providerSignature": sign(f"0x22{nonce}", first.key),
        }
        url = served.base_url + "/api/v1/compute"
        wait = assert_too_many(await send(session, "POST", url, json=body), "starts_per_second", 4)
        other = Provider(session, served.base_url, fresh_key())
        code, answer = await other.call(
            "PUT", "/api/v1/compute", params=other.signed(job_id="no-such-job")
        )
        assert (code, answer) == (200, []), "another provider's key has its own bucket"

        await asyncio.sleep(wait)
        status, [job], _ = await send(session, "POST", url, json=body)
        assert status == 200, "the same nonce and signature: the 429 used up neither"
        jobs.append(job["jobId"])
        await operator_wait(other, jobs)
        codes = [
            (await send(session, "GET", url, params=first.signed(job_id=jobs[0])))[0]
            for _ in range(FAST)
        ]
        assert codes.count(429) > FAST / 2, codes


# -- unsigned routes, by client IP --------------------------------------------------


async def test_unsigned_routes_are_limited_per_client_ip_in_every_dialect(tmp_path: Any) -> None:
    limits = "unsigned_per_second = 10\nunsigned_burst = 3"
    routes = {
        "/": None,  # the provider API's
        "/api/services/nonce": {"userAddress": "0x" + "11" * 20},
        "/node/api/services/compute": {"consumerAddress": "0x" + "11" * 20, "jobId": "no-such-job"},
        "/api/v1/environments": None,
    }
    async with server(tmp_path, limits=limits) as served:
        for n, (path, params) in enumerate(routes.items()):
            async with session_from(f"127.0.0.{n + 2}") as session:  # an IP of its own
                url = served.base_url + path
                answers = [await send(session, "GET", url, params=params) for _ in range(4)]
                assert [a[0] for a in answers[:3]] == [200] * 3, path
                assert_too_many(answers[-1], "unsigned_per_second", 10)
        async with session_from("127.0.0.2") as drained:  # its bucket is empty, and yet:
            for path in ("/health", "/metrics"):  # never limited: a balancer must see it
                codes = [(await send(drained, "GET", served.base_url + path))[0] for _ in range(6)]
                assert codes == [200] * 6


# -- who is exempt ------------------------------------------------------------------


async def test_exempt_loopback_operators_and_address_rows(tmp_path: Any) -> None:
    exempt, limited = fresh_key(), fresh_key()
    exempt_address = ProviderKey(exempt).address
    row = f'{LIMITS}[limits.addresses."{exempt_address}"]\nexempt = true\n'
    async with server(tmp_path / "rows", limits=row) as served, session_from() as session:
        url = served.base_url + "/api/services/compute"
        for key, expected in ((exempt, {200}), (limited, {200, 429})):
            consumer = Consumer(session, served.base_url, key)
            codes = [
                (await send(session, "GET", url, params=signed_status(consumer, "no-such-job")))[0]
                for _ in range(10)
            ]
            assert set(codes) == expected

    loopback = "exempt_loopback = true\nread_burst = 1\nunsigned_burst = 1"
    async with server(tmp_path / "lo", limits=loopback) as served, session_from() as session:
        consumer = Consumer(session, served.base_url, limited)
        url = served.base_url + "/api/services/compute"
        for params in (
            signed_status(consumer, "no-such-job"),
            {"consumerAddress": consumer.address},
        ):
            codes = [(await send(session, "GET", url, params=params))[0] for _ in range(10)]
            assert codes == [200] * 10

    operators = f'{OPERATOR_ENV}\n[operator]\nallowed_providers = ["{exempt_address}"]\n'
    async with (
        server(tmp_path / "op", extra=operators) as served,
        session_from() as session,
    ):
        allowed = Provider(session, served.base_url, exempt)
        url = served.base_url + "/api/v1/operator/compute"
        codes = [
            (await send(session, "GET", url, params=allowed.signed(owner="0x22")))[0]
            for _ in range(10)
        ]
        assert codes == [200] * 10, "an allowed provider (exempt_operators = true)"


# -- the client library --------------------------------------------------------------


async def test_the_client_waits_out_a_429_and_sends_the_same_start_again(tmp_path: Any) -> None:
    async with server(tmp_path) as served, Client(served.base_url, Key(fresh_key())) as client:
        began = time.monotonic()
        jobs = [
            await client.start(
                [LOCAL_DID], rawcode="true", image="localcompute/busybox", entrypoint="sh $ALGO"
            )
            for _ in range(2)
        ]
        assert time.monotonic() - began >= 0.2, "the second waited for its token (1/4 s)"
        for job in jobs:
            assert (await client.wait(job.job_id, poll=0.05)).status == 70
