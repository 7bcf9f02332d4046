"""Ocean Node's dialect at /node, over the FakeRuntime: discovery, nonces, signatures,
tokens, the job's life in the node's words, results with Range, live logs, and every
refusal as JSON. ocean.js 8 itself drives the same routes in tests/clients."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import tarfile
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from localcompute.web.auth import ProviderKey
from tests.gates import Gates
from tests.node_client import FREE_ENV, NodeClient, js_sign, raw_algorithm
from tests.served import CONSUMER, OTHER_KEY, Served, fake_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

PAID = """
[[environments]]
id = "paid"
price_min = 2
max_jobs = 1
"""
# §3.3 of the reference: what ocean.js 8.6.2 put on the wire for key 0x11…11, nonce 1.
VECTOR_SIGNATURE = (
    "0xc18aead0a002d69861a5b9f5c16e301ec7fd0f5793b58e872bd48dc27b4505972765b9b0978717e1"
    "36e972ce98d6eb1ac17feaa3a8cffdf67d1781c0622c41c01c"
)
WRITES = (
    "echo hello; echo node > $OUTPUTS/result.txt; mkdir $OUTPUTS/sub; echo deep > $OUTPUTS/sub/f"
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    async with fake_server(tmp_path_factory.mktemp("node"), environments_first=PAID) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def client(served: Served, session: aiohttp.ClientSession) -> NodeClient:
    return NodeClient(session, served.base_url)


@pytest.fixture
def stranger(served: Served, session: aiohttp.ClientSession) -> NodeClient:
    return NodeClient(session, served.base_url, OTHER_KEY)


@pytest.fixture
def dataset(served: Served) -> list[dict[str, Any]]:
    port = served.extra["files"].server_port
    url = f"http://127.0.0.1:{port}/data.csv"
    return [{"fileObject": {"type": "url", "url": url, "method": "GET"}}]


async def job_count(client: NodeClient) -> int:
    token = await client.token()
    code, jobs = await client.status(headers={"Authorization": token})
    assert code == 200
    return len(jobs)


# -- the reference's own vector first: this key's node nonce is still 0 ----------


async def test_the_reference_signature_vector_starts_a_job(
    client: NodeClient, dataset: list[dict[str, Any]]
) -> None:
    assert client.address == CONSUMER
    assert await client.nonce() == 0
    body = client.body(raw_algorithm(WRITES), dataset)
    body.update({"nonce": "1", "signature": VECTOR_SIGNATURE})
    code, answer = await client.post("/api/services/freeCompute", body)
    assert code == 200, answer
    [job] = answer
    assert job["owner"] == CONSUMER and job["environment"] == FREE_ENV
    assert (job["status"], job["statusText"]) == (1, "Job queued") or job["status"] >= 10
    assert job["dateFinished"] is None and job["results"] == [] and job["isFree"] is True
    assert await client.nonce() == 1

    done = await client.wait(job["jobId"])
    assert done["jobId"] == job["jobId"]  # the same id in every answer
    assert (done["status"], done["statusText"]) == (70, "Job finished")
    assert done["terminationDetails"]["exitCode"] == 0
    assert done["terminationDetails"]["OOMKilled"] is False
    assert float(done["dateFinished"]) >= float(done["dateCreated"])
    assert [(r["filename"], r["type"], r["index"]) for r in done["results"]] == [
        ("configuration.log", "configurationLog", 0),
        ("algorithm.log", "algorithmLog", 1),
        ("outputs.tar", "output", 2),
        ("receipt.json", "receipt", 3),
    ]

    code, tar_bytes, response = await client.result(job["jobId"], 2)
    assert code == 200 and len(tar_bytes) == done["results"][2]["filesize"]
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        names = sorted(tar.getnames())
        assert names == ["outputs", "outputs/result.txt", "outputs/sub", "outputs/sub/f"]
        assert tar.extractfile("outputs/result.txt").read() == b"node\n"  # type: ignore[union-attr]
    code, log, _ = await client.result(job["jobId"], 1)
    assert (code, log) == (200, b"hello\n")
    # A resumed download (ocean.js sends Range: bytes=N-) gets the rest, not byte 0 again.
    code, tail, response = await client.result(job["jobId"], 2, headers={"Range": "bytes=100-"})
    assert code == 206 and tail == tar_bytes[100:]
    assert response.headers["Content-Range"] == f"bytes 100-{len(tar_bytes) - 1}/{len(tar_bytes)}"


# -- discovery ------------------------------------------------------------------


async def test_root_document_is_served_at_the_prefix_with_and_without_slash(
    served: Served, session: aiohttp.ClientSession
) -> None:
    provider = ProviderKey(bytes.fromhex("22" * 32))
    for path in ("/node", "/node/"):
        # ocean.js 8 sends the literal header "Authorization: undefined" here.
        async with session.get(served.base_url + path, headers={"Authorization": "undefined"}) as r:
            assert r.status == 200
            root = await r.json()
        assert root["providerAddress"] == provider.address
        assert root["nodePublicKey"] == provider.public_key
        endpoints = root["serviceEndpoints"]
        assert endpoints["freeCompute"] == ["POST", "/api/services/freeCompute"]
        assert endpoints["computeStatus"] == ["GET", "/api/services/compute"]
        assert endpoints["computeStop"] == ["PUT", "/api/services/compute"]
        assert endpoints["generateAuthToken"] == ["POST", "/api/services/auth/token"]
        assert endpoints["invalidateAuthToken"] == ["POST", "/api/services/auth/token/invalidate"]
        assert {"nonce", "computeEnvironments", "computeResult", "computeStreamableLogs"} <= set(
            endpoints
        )
    async with session.get(served.base_url + "/") as r:
        classic = await r.json()
    assert "providerAddresses" in classic and "freeCompute" not in classic["serviceEndpoints"]


async def test_environments_have_the_node_shape_and_only_free_ones_a_free_block(
    client: NodeClient, session: aiohttp.ClientSession
) -> None:
    async with session.get(client.url("/api/services/computeEnvironments")) as r:
        assert r.status == 200
        envs = await r.json()
    assert [e["id"] for e in envs] == ["paid", FREE_ENV]
    paid, free = envs
    assert "free" not in paid
    assert free["consumerAddress"] == ProviderKey(bytes.fromhex("22" * 32)).address
    assert free["platform"]["os"] == "linux"
    resources = {r["id"]: r for r in free["resources"]}
    assert set(resources) == {"cpu", "ram", "disk"}
    assert (resources["cpu"]["max"], resources["cpu"]["total"]) == (1, 2)  # 1 per job, 2 jobs
    assert free["free"]["maxJobDuration"] == 60
    assert {r["id"] for r in free["free"]["resources"]} == {"cpu", "ram", "disk"}
    assert free["maxJobs"] == 2 and free["runningJobs"] == 0


async def test_nonces_are_strings_kept_apart_from_the_classic_api(
    client: NodeClient, session: aiohttp.ClientSession, served: Served
) -> None:
    before = await client.nonce()
    async with session.get(
        served.base_url + "/api/services/nonce", params={"userAddress": client.address}
    ) as r:
        classic = (await r.json())["nonce"]
    async with session.get(
        client.url("/api/services/nonce"), params={"userAddress": client.address.lower()}
    ) as r:
        assert (await r.json()) == {"nonce": str(before)}  # the same counter, case-blind
    assert classic == "0"
    for query in ({}, {"userAddress": "not-an-address"}):
        async with session.get(client.url("/api/services/nonce"), params=query) as r:
            assert r.status == 400
            assert isinstance((await r.json())["error"], str)


# -- refusals change nothing ------------------------------------------------------


async def test_every_bad_credential_is_a_401_that_uses_no_nonce_and_starts_nothing(
    client: NodeClient, dataset: list[dict[str, Any]]
) -> None:
    count = await job_count(client)
    nonce = await client.nonce()
    body = client.body(raw_algorithm("true"), dataset)
    address = client.address
    cases = {
        "replayed nonce": {
            "nonce": str(nonce),
            "signature": js_sign(f"{address}{nonce}freeStartCompute", client.key),
        },
        "wrong command": {
            "nonce": str(nonce + 1),
            "signature": js_sign(f"{address}{nonce + 1}stopCompute", client.key),
        },
        "another signer": {
            "nonce": str(nonce + 1),
            "signature": js_sign(f"{address}{nonce + 1}freeStartCompute", OTHER_KEY),
        },
        "not digits": {
            "nonce": "1e9",
            "signature": js_sign(f"{address}1e9freeStartCompute", client.key),
        },
        "negative": {
            "nonce": "-5",
            "signature": js_sign(f"{address}-5freeStartCompute", client.key),
        },
        "garbage signature": {"nonce": str(nonce + 1), "signature": "0xzz"},
        "nothing": {},
    }
    for name, credentials in cases.items():
        code, answer = await client.post("/api/services/freeCompute", {**body, **credentials})
        assert code == 401, (name, answer)
        assert isinstance(answer["error"], str), name
    for header in (
        "undefined",
        "null",
        "",
        "Bearer not.a.jwt",
        "eyJhbGciOiJub25lIn0.eyJhZGRyZXNzIjoiMHgxIn0.",
    ):
        code, answer = await client.post(
            "/api/services/freeCompute", body, {"Authorization": header}
        )
        assert code == 401, (header, answer)
    assert await client.nonce() == nonce
    assert await job_count(client) == count


async def test_bad_requests_are_json_400s_that_name_the_problem(
    client: NodeClient, dataset: list[dict[str, Any]], session: aiohttp.ClientSession
) -> None:
    nonce = await client.nonce()
    ipfs = [{"fileObject": {"type": "ipfs", "hash": "Qm"}}]
    docker_build = raw_algorithm("true")
    docker_build["meta"]["container"]["dockerfile"] = "FROM busybox"
    cases: list[tuple[dict[str, Any], str]] = [
        (
            client.body(raw_algorithm("true"), dataset, resources=[{"id": "cpu", "amount": 2}]),
            "Not enough cpu resources. Requested 2, but max is 1",
        ),
        (
            client.body(raw_algorithm("true"), dataset, resources=[{"id": "tpu", "amount": 1}]),
            "no resource 'tpu'",
        ),
        (client.body(raw_algorithm("true"), dataset, maxJobDuration=61), "maxJobDuration"),
        (client.body(raw_algorithm("true"), ipfs), "send a url file"),
        (client.body(docker_build, dataset), "building images is not allowed"),
        ({**client.body(raw_algorithm("true"), dataset), "environment": "paid"}, "no free tier"),
        ({**client.body(raw_algorithm("true"), dataset), "environment": "nope"}, "nope"),
        (client.body(raw_algorithm("true"), dataset, output="0xabcd"), "output"),
        (client.body(raw_algorithm("   "), dataset), "rawcode"),
        ({**client.body(raw_algorithm("true"), dataset), "datasets": "x"}, "datasets"),
    ]
    for body, words in cases:
        body.update(await client.signed("freeStartCompute"))
        code, answer = await client.post("/api/services/freeCompute", body)
        assert code == 400, (words, answer)
        assert words in json.dumps(answer), (words, answer)
    body = {
        **client.body(raw_algorithm("true"), dataset),
        **await client.signed("freeStartCompute"),
    }
    code, answer = await client.post(
        "/api/services/freeCompute", {**body, "consumerAddress": "0x12"}
    )
    assert code == 400 and "not an Ethereum address" in answer["error"]
    async with session.post(client.url("/api/services/freeCompute"), data=b"{not json") as r:
        assert r.status == 400 and "error" in await r.json()
    assert await client.nonce() == nonce  # a refused start uses up no nonce


async def test_paid_compute_and_initialize_say_a_chain_is_missing(client: NodeClient) -> None:
    for path in ("/api/services/compute", "/api/services/initializeCompute"):
        code, answer = await client.post(path, {"datasets": [], "consumerAddress": client.address})
        assert code == 400
        assert "chain" in answer["error"] and "freeCompute" in answer["error"]


async def test_unknown_routes_under_the_prefix_answer_json(
    client: NodeClient, session: aiohttp.ClientSession
) -> None:
    async with session.get(client.url("/api/services/nothing")) as r:
        assert r.status == 404 and "error" in await r.json()


# -- owners -----------------------------------------------------------------------


async def test_another_owner_can_neither_see_stop_fetch_nor_follow_a_job(
    client: NodeClient, stranger: NodeClient, dataset: list[dict[str, Any]]
) -> None:
    code, [job] = await client.start(raw_algorithm("sleep 30"), dataset)
    assert code == 200
    running = await client.wait(job["jobId"], running=True)
    assert running["statusText"] == "Running algorithm "
    code, jobs = await stranger.status(job["jobId"])
    assert (code, jobs) == (200, [])
    stranger_nonce = await stranger.nonce()
    code, answer = await stranger.stop(job["jobId"])
    assert code == 404 and "error" in answer
    code, _, _ = await stranger.result(job["jobId"], 0)
    assert code == 404
    params = {**await stranger.signed("getComputeStreamableLogs"), "jobId": job["jobId"]}
    async with stranger.session.get(
        stranger.url("/api/services/computeStreamableLogs"), params=params
    ) as r:
        assert r.status == 404 and "error" in await r.json()
    assert await stranger.nonce() == stranger_nonce
    # A status without jobId and without the owner's token lists nothing of anyone's.
    code, answer = await stranger.status()
    assert code == 401 and "error" in answer

    code, [stopped] = await client.stop(job["jobId"])
    assert code == 200 and stopped["stopRequested"] is True and stopped["jobId"] == job["jobId"]
    done = await client.wait(job["jobId"])
    assert (done["status"], done["terminationDetails"]["reason"]) == (70, "stopped")


# -- live logs --------------------------------------------------------------------


async def test_logs_stream_live_to_the_owner_and_404_when_not_running(
    client: NodeClient, dataset: list[dict[str, Any]], gates: Gates
) -> None:
    second, third = gates(), gates()
    code, [job] = await client.start(
        raw_algorithm(f"echo line 1; {second.wait}; echo line 2; {third.wait}; echo line 3"),
        dataset,
    )
    assert code == 200
    await client.wait(job["jobId"], running=True)
    params = {**await client.signed("getComputeStreamableLogs"), "jobId": job["jobId"]}
    async with client.session.get(
        client.url("/api/services/computeStreamableLogs"), params=params
    ) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
        # Each line comes as written: the next is not written before its gate opens (a
        # log sent only at its end never comes).
        for line, gate in ((b"line 1\n", second), (b"line 2\n", third)):
            assert await asyncio.wait_for(r.content.readline(), 10) == line
            await gate.open()
        assert await r.content.read() == b"line 3\n"
    done = await client.wait(job["jobId"])
    params = {**await client.signed("getComputeStreamableLogs"), "jobId": job["jobId"]}
    async with client.session.get(
        client.url("/api/services/computeStreamableLogs"), params=params
    ) as r:
        assert r.status == 404
        assert await r.json() == {"error": "Job not found or not running"}
    assert done["status"] == 70


# -- auth tokens --------------------------------------------------------------------


async def test_a_token_starts_and_follows_jobs_until_it_is_invalidated(
    client: NodeClient, stranger: NodeClient, dataset: list[dict[str, Any]]
) -> None:
    token = await client.token()
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert payload["address"] == client.address  # ocean.js reads it unverified
    nonce = await client.nonce()

    # As ocean.js 8.0 sends it in token mode: signature null, a nonce it did not sign.
    body = client.body(raw_algorithm(WRITES), dataset, signature=None, nonce=str(nonce + 1))
    code, answer = await client.post("/api/services/freeCompute", body, {"Authorization": token})
    assert code == 200, answer
    [job] = answer
    assert await client.nonce() == nonce  # a token uses no nonce
    code, jobs = await client.status(headers={"Authorization": f"Bearer {token}"})
    assert code == 200 and job["jobId"] in [j["jobId"] for j in jobs]
    done = await client.wait(job["jobId"])

    # ocean.js 8 fetches a token session's results with no credentials at all (§4.6).
    code, log, _ = await client.result(job["jobId"], 1, signed=False)
    assert (code, log) == (200, b"hello\n")
    code, _, _ = await stranger.result(job["jobId"], 1, signed=False)
    assert code in (401, 404)

    # The token is its owner's only: another consumerAddress with it is refused.
    other = {**body, "consumerAddress": stranger.address}
    code, answer = await client.post("/api/services/freeCompute", other, {"Authorization": token})
    assert code == 401 and "belongs to" in answer["error"]

    # ocean.js 8 signs the invalidation over address + nonce, no command.
    n = await client.nonce() + 1
    invalidate = {
        "address": client.address,
        "nonce": str(n),
        "signature": js_sign(f"{client.address}{n}", client.key),
        "token": token,
    }
    code, answer = await client.post("/api/services/auth/token/invalidate", invalidate)
    assert (code, answer) == (200, {"success": True})
    code, answer = await client.post("/api/services/freeCompute", body, {"Authorization": token})
    assert code == 401 and "invalidated" in answer["error"]
    code, _, _ = await client.result(job["jobId"], 1, signed=False)
    assert code == 401
    assert done["status"] == 70


async def test_only_the_owner_can_invalidate_a_token(
    client: NodeClient, stranger: NodeClient
) -> None:
    token = await client.token()
    n = await stranger.nonce() + 1
    forged = {
        "address": stranger.address,
        "nonce": str(n),
        "signature": js_sign(f"{stranger.address}{n}invalidateAuthToken", stranger.key),
        "token": token,
    }
    code, answer = await stranger.post("/api/services/auth/token/invalidate", forged)
    assert code == 401 and "belongs to" in answer["error"]
    code, _ = await client.status(headers={"Authorization": token})
    assert code == 200


async def test_a_token_of_another_server_or_a_tampered_one_is_refused(
    client: NodeClient,
) -> None:
    token = await client.token()
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["address"] = ProviderKey(OTHER_KEY).address
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    code, answer = await client.status(headers={"Authorization": f"{header}.{forged}.{signature}"})
    assert code == 401 and "Invalid token" in answer["error"]


async def test_a_job_started_meanwhile_is_counted_in_the_environment(
    client: NodeClient, dataset: list[dict[str, Any]]
) -> None:
    code, [job] = await client.start(
        raw_algorithm("sleep 30"), dataset, resources=[{"id": "disk", "amount": 0.5}]
    )
    assert code == 200
    # The filled request: what was asked, the environment's amount for the rest.
    assert job["resources"] == [
        {"id": "cpu", "amount": 1},
        {"id": "ram", "amount": 1},
        {"id": "disk", "amount": 0.5},
    ]
    await client.wait(job["jobId"], running=True)
    async with client.session.get(client.url("/api/services/computeEnvironments")) as r:
        free = (await r.json())[1]
    in_use = {r["id"]: r["inUse"] for r in free["resources"]}
    assert in_use == {"cpu": 1, "ram": 1, "disk": 0.5} and free["runningJobs"] == 1
    code, _ = await client.stop(job["jobId"])
    assert code == 200
    await client.wait(job["jobId"])


async def test_with_unsigned_results_never_a_token_session_must_sign_its_downloads(
    tmp_path_factory: pytest.TempPathFactory, session: aiohttp.ClientSession
) -> None:
    strict = '[node]\nprefix = "/ocean"\nunsigned_results = "never"\n'
    async with fake_server(tmp_path_factory.mktemp("strict"), extra=strict) as served:
        client = NodeClient(session, served.base_url)
        client.uri = served.base_url + "/ocean"
        port = served.extra["files"].server_port
        files = [
            {"fileObject": {"type": "url", "url": f"http://127.0.0.1:{port}/d", "method": "GET"}}
        ]
        token = await client.token()
        body = client.body(raw_algorithm(WRITES), files)
        code, answer = await client.post(
            "/api/services/freeCompute", body, {"Authorization": token}
        )
        assert code == 200, answer
        done = await client.wait(answer[0]["jobId"])
        code, _, _ = await client.result(done["jobId"], 1, signed=False)
        assert code == 401
        code, log, _ = await client.result(done["jobId"], 1)
        assert (code, log) == (200, b"hello\n")


async def test_a_failed_download_says_which_input_and_why_in_one_line(
    client: NodeClient,
) -> None:
    from tests.served import free_port

    dead = f"http://127.0.0.1:{free_port()}/gone.csv"  # nothing listens there
    files = [{"fileObject": {"type": "url", "url": dead, "method": "GET"}}]
    code, [job] = await client.start(raw_algorithm("true"), files)
    assert code == 200
    done = await client.wait(job["jobId"])
    assert (done["status"], done["statusText"]) == (31, "Data provisioning failed")
    detail = done["terminationDetails"]["detail"]
    assert detail.startswith("input 0 (did:op:") and "download failed" in detail
    assert "127.0.0.1" not in detail  # the helper never says where an input lives
    code, log, _ = await client.result(job["jobId"], 0)
    assert code == 200 and log.decode().count(detail) == 1
