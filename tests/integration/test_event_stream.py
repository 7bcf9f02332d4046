"""The event streams as a client reads them: a consumer's own (signed, its jobs only) and
the dashboard's (every job, the operator's networks only), each change once, in order,
and a reconnect with the last id it saw is sent what it missed."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from localcompute.web import sse
from tests.served import Consumer, fake_server

PIPELINE = [1, 10, 20, 30, 40, 50, 60, 70]
ECHO = {
    "meta": {
        "rawcode": "echo result > $OUTPUTS/r.txt",
        "container": {"image": "localcompute/busybox", "entrypoint": "sh $ALGO"},
    }
}
OTHER_KEY = bytes.fromhex("22" * 32)


class Stream:
    """One open event stream, read frame by frame."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def frame(self, timeout: float = 10) -> dict[str, Any]:
        """The next event: its kind, id and data (comments and retry lines are skipped)."""
        fields: dict[str, Any] = {}
        async with asyncio.timeout(timeout):
            async for raw in self.response.content:
                line = raw.decode().rstrip("\n")
                if not line:
                    if "event" in fields:
                        return fields
                    continue
                name, _, value = line.partition(": ")
                if name == "data":
                    fields["data"] = json.loads(value)
                elif name in ("event", "id"):
                    fields[name] = value
        raise AssertionError(f"the stream ended: {fields}")

    async def statuses_until_final(self, job_id: str) -> list[dict[str, Any]]:
        seen = []
        while True:
            frame = await self.frame()
            assert frame["event"] == "status", frame
            seen.append(frame)
            if frame["data"]["jobId"] == job_id and frame["data"]["status"] in (31, 32, 70):
                return seen


def events_query(consumer: Consumer, nonce: int, **extra: str) -> dict[str, str]:
    return {
        "consumerAddress": consumer.address,
        "nonce": str(nonce),
        "signature": consumer.sign(f"{consumer.address}{nonce}computeEvents"),
        **extra,
    }


@asynccontextmanager
async def consumer_stream(
    consumer: Consumer, headers: dict[str, str] | None = None, **extra: str
) -> AsyncIterator[Stream]:
    params = events_query(consumer, await consumer.next_nonce(), **extra)
    async with consumer.session.get(
        consumer.base + "/api/services/computeEvents", params=params, headers=headers
    ) as r:
        assert r.status == 200, await r.text()
        assert r.content_type == "text/event-stream"
        yield Stream(r)


async def test_a_consumer_sees_each_of_its_own_changes_once_in_order(tmp_path: Path) -> None:
    async with fake_server(tmp_path) as served, aiohttp.ClientSession() as session:
        mine, theirs = (
            Consumer(session, served.base_url),
            Consumer(session, served.base_url, OTHER_KEY),
        )
        async with consumer_stream(mine) as stream:
            ready = await stream.frame()
            assert ready["event"] == "ready"
            _, [other] = await theirs.start(ECHO)
            _, [job] = await mine.start(ECHO)
            seen = await stream.statuses_until_final(job["jobId"])
            await theirs.wait_final(other["jobId"])
        assert {f["data"]["jobId"] for f in seen} == {job["jobId"]}, "only the signer's jobs"
        assert [f["data"]["status"] for f in seen] == PIPELINE
        ids = [int(f["id"]) for f in seen]
        assert ids == sorted(set(ids)) and ids[0] > ready["data"]["lastEventId"]
        last = seen[-1]["data"]
        assert last["statusText"] == "Job completed" and last["exitCode"] == 0


async def test_a_reconnect_with_the_last_event_id_gets_what_it_missed(tmp_path: Path) -> None:
    async with fake_server(tmp_path) as served, aiohttp.ClientSession() as session:
        consumer = Consumer(session, served.base_url)
        async with consumer_stream(consumer) as stream:
            last = (await stream.frame())["data"]["lastEventId"]
        _, [job] = await consumer.start(ECHO)  # while no stream is open
        await consumer.wait_final(job["jobId"])
        async with consumer_stream(consumer, headers={"Last-Event-ID": str(last)}) as stream:
            assert (await stream.frame())["event"] == "ready"
            missed = await stream.statuses_until_final(job["jobId"])
        assert [f["data"]["status"] for f in missed] == PIPELINE
        # The id as a parameter does the same, for clients that cannot set headers.
        middle = missed[3]["id"]
        async with consumer_stream(consumer, lastEventId=middle) as stream:
            await stream.frame()
            rest = await stream.statuses_until_final(job["jobId"])
        assert [f["data"]["status"] for f in rest] == PIPELINE[4:]


async def test_an_id_the_server_never_wrote_is_a_gap(tmp_path: Path) -> None:
    async with fake_server(tmp_path) as served, aiohttp.ClientSession() as session:
        consumer = Consumer(session, served.base_url)
        async with consumer_stream(consumer, headers={"Last-Event-ID": "999999"}) as stream:
            await stream.frame()
            gap = await stream.frame()
        assert gap["event"] == "gap" and gap["data"]["after"] == 999999


async def test_the_stream_refuses_forged_replayed_and_malformed_requests(tmp_path: Path) -> None:
    async with fake_server(tmp_path) as served, aiohttp.ClientSession() as session:
        consumer = Consumer(session, served.base_url)
        intruder = Consumer(session, served.base_url, OTHER_KEY)
        url = served.base_url + "/api/services/computeEvents"
        nonce = await consumer.next_nonce()
        forged = events_query(consumer, nonce)
        forged["signature"] = intruder.sign(f"{consumer.address}{nonce}computeEvents")
        async with session.get(url, params=forged) as r:
            assert r.status == 400 and "signature" in (await r.json())["errors"]
        spent = events_query(consumer, nonce)
        async with session.get(url, params=spent) as r:
            assert r.status == 200
        async with session.get(url, params=spent) as r:  # the same nonce again
            assert r.status == 400, "a replayed nonce opens no stream"
        async with session.get(url, params={"consumerAddress": consumer.address}) as r:
            assert r.status == 400
        bad_id = events_query(consumer, await consumer.next_nonce())
        async with session.get(url, params=bad_id, headers={"Last-Event-ID": "1; DROP"}) as r:
            assert r.status == 400 and "Last-Event-ID" in json.dumps(await r.json())


async def test_the_dashboard_stream_carries_every_job_and_resumes(tmp_path: Path) -> None:
    async with fake_server(tmp_path) as served, aiohttp.ClientSession() as session:
        a, b = Consumer(session, served.base_url), Consumer(session, served.base_url, OTHER_KEY)
        async with session.get(served.base_url + "/ui/events") as r:
            assert r.status == 200
            stream = Stream(r)
            ready = await stream.frame()
            _, [one] = await a.start(ECHO)
            _, [two] = await b.start(ECHO)
            await a.wait_final(one["jobId"])
            await b.wait_final(two["jobId"])
            seen = [await stream.frame() for _ in range(2 * len(PIPELINE))]
        jobs = {f["data"]["jobId"] for f in seen}
        assert jobs == {one["jobId"], two["jobId"]}
        for job_id in jobs:
            assert [f["data"]["status"] for f in seen if f["data"]["jobId"] == job_id] == PIPELINE
        headers = {"Last-Event-ID": str(ready["data"]["lastEventId"])}
        async with session.get(served.base_url + "/ui/events", headers=headers) as r:
            stream = Stream(r)
            await stream.frame()
            again = [await stream.frame() for _ in range(2 * len(PIPELINE))]
        assert [f["id"] for f in again] == [f["id"] for f in seen]


async def test_the_dashboard_is_the_operators_only(tmp_path: Path) -> None:
    allow = 'metrics_allow = ["10.99.0.0/16"]'
    async with fake_server(tmp_path, server_extra=allow) as served, aiohttp.ClientSession() as s:
        for path in ("/ui/", "/ui/static/app.js", "/ui/api/overview", "/ui/api/jobs", "/ui/events"):
            async with s.get(served.base_url + path) as r:
                assert r.status == 403, path
                assert "metrics_allow" in (await r.json())["error"]
        async with s.get(served.base_url + "/metrics") as r:
            assert r.status == 403


async def test_a_reader_that_left_is_noticed_and_its_stream_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sse, "HEARTBEAT", 0.05)

    async def open_streams(session: aiohttp.ClientSession, base: str) -> dict[str, float]:
        async with session.get(base + "/metrics") as r:
            text = await r.text()
        found = re.findall(r'^localcompute_event_streams\{stream="(\w+)"\} (\S+)$', text, re.M)
        return {kind: float(n) for kind, n in found}

    async with fake_server(tmp_path) as served, aiohttp.ClientSession() as session:
        consumer = Consumer(session, served.base_url)
        async with (
            consumer_stream(consumer) as stream,
            session.get(served.base_url + "/ui/events") as dashboard,
        ):
            await stream.frame()
            await Stream(dashboard).frame()
            assert await open_streams(session, served.base_url) == {
                "consumer": 1.0,
                "dashboard": 1.0,
            }
        async with asyncio.timeout(5):  # the readers closed their connections: noticed
            while set((await open_streams(session, served.base_url)).values()) != {0.0}:
                await asyncio.sleep(0.05)


async def test_the_node_dialect_streams_by_signature_or_token(tmp_path: Path) -> None:
    from tests.node_client import NodeClient

    async with fake_server(tmp_path) as served, aiohttp.ClientSession() as session:
        node = NodeClient(session, served.base_url)
        consumer = Consumer(session, served.base_url)  # the same key, in the classic dialect
        url = node.url("/api/services/computeEvents")
        async with session.get(url, params=await node.signed("computeEvents")) as r:
            assert r.status == 200
            assert (await Stream(r).frame())["event"] == "ready"
        token = await node.token()
        async with session.get(url, headers={"Authorization": token}) as r:
            assert r.status == 200
            stream = Stream(r)
            await stream.frame()
            _, [job] = await consumer.start(ECHO)
            seen = await stream.statuses_until_final(job["jobId"])
        assert [f["data"]["status"] for f in seen] == PIPELINE
        async with session.get(url, params={"consumerAddress": node.address}) as r:
            assert r.status == 401, "neither a signature nor a token"
        wrong = await node.signed("getComputeResult")  # signed for another command
        async with session.get(url, params=wrong) as r:
            assert r.status == 401
