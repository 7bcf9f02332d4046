"""localcompute.client against the served provider API, over the FakeRuntime: what a
program using the client sees, including the server's refusals and a nonce race."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from localcompute.client import (
    Client,
    InputRefusedError,
    JobRemovedError,
    Key,
    NodeClient,
    NoLogError,
    ReceiptError,
    RemoteError,
    RemoteJob,
    SyncClient,
    verify_receipt,
)
from tests.gates import Gate, Gates
from tests.served import ENV, LOCAL_DID, URL_DID, Consumer, Served, fake_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

SHELL = {"image": "localcompute/busybox", "tag": "latest", "entrypoint": "sh $ALGO"}


def talks(gate: Gate) -> str:
    """Three lines, held after the first until the test opens `gate`."""
    return f"echo line 1; {gate.wait}; echo line 2; echo line 3; echo out > $OUTPUTS/out.txt"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    async with fake_server(tmp_path_factory.mktemp("client")) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module")
async def client(served: Served) -> AsyncIterator[Client]:
    async with Client(served.base_url, Key.random()) as c:
        yield c


async def test_start_follow_wait_and_download(client: Client, tmp_path: Path, gates: Gates) -> None:
    gate = gates()
    job = await client.start([LOCAL_DID], rawcode=talks(gate), **SHELL)
    assert job.owner == client.address and job.environment == ENV and not job.is_final
    seen: list[int] = []
    lines: list[str] = []

    async def follow() -> None:
        while (await client.status(job.job_id)).status < 40:
            await asyncio.sleep(0.05)
        async for line in client.logs(job.job_id):
            lines.append(line)
            if line == "line 1":  # it came while the job runs, which it does till now
                while 40 not in seen:  # and on till wait() has seen it run
                    await asyncio.sleep(0.01)
                await gate.open()

    follower = asyncio.create_task(follow())
    done = await client.wait(job.job_id, on_status=lambda j: seen.append(j.status), poll=0.05)
    await follower
    assert lines == ["line 1", "line 2", "line 3"]
    assert seen[-1] == 70 and seen == sorted(seen) and 40 in seen
    assert (done.status, done.exit_code, done.termination_reason) == (70, 0, "completed")
    assert done.reason == "Job completed"

    path = await client.download(job.job_id, "out.txt", tmp_path)
    assert path == tmp_path / "out.txt" and path.read_text() == "out\n"
    # A partial file is resumed from where it stopped (an HTTP Range), not started over.
    log = tmp_path / "algorithm.log"
    log.write_bytes(b"line 1\n")
    await client.download(job.job_id, "algorithm.log", log)
    assert log.read_text() == "line 1\nline 2\nline 3\n"
    assert [j.job_id for j in await client.jobs()] == [job.job_id]


async def test_logs_of_a_queued_job_wait_for_its_algorithm_then_stream_live(
    client: Client, gates: Gates
) -> None:
    # The environment runs two jobs at once: two sleepers hold it and the third waits.
    sleepers = [await client.start([LOCAL_DID], rawcode="sleep 30", **SHELL) for _ in range(2)]
    gate = gates()
    job = await client.start([LOCAL_DID], rawcode=talks(gate), **SHELL)
    assert (await client.status(job.job_id)).status_text == "Warming up"
    lines = client.logs(job.job_id, poll=0.05)
    first = asyncio.ensure_future(anext(lines))
    await asyncio.sleep(0.2)  # a logs() that ended at once would have ended by now
    assert not first.done(), "logs() of a queued job must wait, not end"
    for sleeper in sleepers:
        await client.stop(sleeper.job_id)
    assert await asyncio.wait_for(first, 30) == "line 1"
    assert (await client.status(job.job_id)).status == 40  # live: it waits at the gate
    await gate.open()
    assert [line async for line in lines] == ["line 2", "line 3"]
    for started in (*sleepers, job):
        await client.wait(started.job_id, poll=0.05)


async def test_a_finished_job_gives_its_whole_log_and_lists_its_results(
    client: Client, gates: Gates
) -> None:
    gate = gates()
    job = await client.start([LOCAL_DID], rawcode=talks(gate), **SHELL)
    assert await client.results(job.job_id) == []  # nothing until it has ended
    await gate.open()
    await client.wait(job.job_id, poll=0.05)
    assert [line async for line in client.logs(job.job_id)] == ["line 1", "line 2", "line 3"]
    results = await client.results(job.job_id)
    assert [(r.index, r.filename, r.type) for r in results] == [
        (0, "out.txt", "output"),
        (1, "algorithm.log", "algorithmLog"),
        (2, "configure.log", "configrationLog"),
        (3, "filter.log", "filteringLog"),
        (4, "publish.log", "publishLog"),
        (5, "receipt.json", "receipt"),
    ]
    out, log = results[:2]
    assert (out.filesize, log.filesize) == (len("out\n"), len("line 1\nline 2\nline 3\n"))
    assert f"jobId={job.job_id}&index=1" in log.url


async def test_the_downloaded_results_and_their_receipt_verify_offline(
    client: Client, served: Served, tmp_path: Path
) -> None:
    """What a consumer does to show others what produced its results: download them
    all, then check the receipt against the provider's address (GET /), offline."""
    job = await client.start([LOCAL_DID], rawcode="echo out > $OUTPUTS/out.txt", **SHELL)
    await client.wait(job.job_id, poll=0.05)
    folder = tmp_path / "results"
    folder.mkdir()
    for result in await client.results(job.job_id):
        await client.download(job.job_id, result.index, folder)
    async with client.session.get(served.base_url + "/") as answer:
        provider = next(iter((await answer.json())["providerAddresses"].values()))

    receipt = verify_receipt(folder / "receipt.json", provider=provider, results=folder)
    assert receipt.job_id == job.job_id and receipt.signer == provider
    assert [s.name for s in receipt.outputs] == ["out.txt"]
    (folder / "out.txt").write_text("not what it wrote\n")
    with pytest.raises(ReceiptError, match=r"out\.txt was changed"):
        verify_receipt(folder / "receipt.json", provider=provider, results=folder)
    with pytest.raises(ReceiptError, match="not by the provider"):
        verify_receipt(folder / "receipt.json", provider=Key.random().address)


async def test_a_job_whose_algorithm_never_ran_has_no_log_and_says_why(
    client: Client, served: Served
) -> None:
    served.extra["runtime"].missing_images.add("no/such-image:latest")
    missing = await client.start(
        [LOCAL_DID], rawcode="echo hi", **{**SHELL, "image": "no/such-image"}
    )
    await client.wait(missing.job_id, poll=0.05)
    with pytest.raises(NoLogError, match=r"has no log: its algorithm never ran \(.*no/such-image"):
        [line async for line in client.logs(missing.job_id)]

    sleepers = [await client.start([LOCAL_DID], rawcode="sleep 30", **SHELL) for _ in range(2)]
    queued = await client.start([LOCAL_DID], rawcode="echo hi", **SHELL)
    await client.stop(queued.job_id)  # while it waits for a slot
    with pytest.raises(NoLogError, match=r"its algorithm never ran \(Job stopped\)"):
        [line async for line in client.logs(queued.job_id)]
    for sleeper in sleepers:
        await client.stop(sleeper.job_id)
        await client.wait(sleeper.job_id, poll=0.05)

    await client.delete(missing.job_id)
    for gone in (
        client.logs(missing.job_id).__anext__(),
        client.results(missing.job_id),
        client.download(missing.job_id, 0, Path(".")),
    ):
        with pytest.raises(JobRemovedError, match=f"job {missing.job_id} was removed"):
            await gone


async def test_refusals_carry_the_server_s_reason(client: Client) -> None:
    with pytest.raises(RemoteError) as refused:
        await client.start([URL_DID], rawcode="true", **SHELL)  # raw code not allowed there
    assert (refused.value.status, refused.value.message) == (
        400,
        "dataset: no_raw_algo_allowed",
    )
    with pytest.raises(RemoteError, match="does not exist"):
        await client.start([LOCAL_DID], rawcode="true", environment="nope", **SHELL)
    # Ocean's answer names the input by its place in the request; the error, by its DID.
    with pytest.raises(InputRefusedError) as unknown:
        await client.start([LOCAL_DID, "did:op:1234"], rawcode="true", **SHELL)
    assert unknown.value.message == (
        "dataset did:op:1234: did_not_found (the provider serves no dataset with this DID)"
    )
    assert unknown.value.body == {"error": {"datasets[1]": "did_not_found"}}
    with pytest.raises(RemoteError) as missing:
        await client.status("no-such-job")
    assert missing.value.status == 404
    with pytest.raises(KeyError):
        RemoteJob.parse({"jobId": "j", "status": 70}).result_index("x")


async def test_a_nonce_the_server_moved_ahead_is_reread_and_the_call_retried(
    client: Client, served: Served
) -> None:
    job = await client.start([LOCAL_DID], rawcode="sleep 30", **SHELL)
    # Another program with the same key signs a nonce far ahead of this client's counter.
    async with aiohttp.ClientSession() as session:
        other = Consumer(session, served.base_url, client.key.to_bytes())
        ahead = 10**15
        status, _ = await other.start({"documentId": "x"}, nonce=ahead)  # refused, nonce unused
        assert status == 400
        stop = other.stop_query(job.job_id, ahead)
        async with session.put(served.base_url + "/api/services/compute", params=stop) as r:
            assert r.status == 200
    stopped = await client.stop(job.job_id)  # its first nonce is refused, the retry is not
    assert stopped.job_id == job.job_id
    done = await client.wait(job.job_id)
    assert done.termination_reason == "stopped"
    deleted = await client.delete(job.job_id)
    assert deleted.removed == 1


async def test_the_blocking_client_does_the_same(served: Served, tmp_path: Path) -> None:
    # In a thread of its own: this server runs on the test's event loop.
    await asyncio.to_thread(blocking_flow, served.base_url, tmp_path)


def blocking_flow(url: str, tmp_path: Path) -> None:
    with SyncClient(url) as client:
        job = client.start([LOCAL_DID], rawcode="echo hi; echo hi > $OUTPUTS/hi.txt", **SHELL)
        assert list(client.logs(job.job_id, poll=0.05)) == ["hi"]  # waits for it to run
        done = client.wait(job.job_id, poll=0.05)
        assert done.status == 70
        assert [r.filename for r in client.results(job.job_id)][:2] == ["hi.txt", "algorithm.log"]
        assert client.download(job.job_id, "hi.txt", tmp_path).read_text() == "hi\n"
        assert list(client.logs(job.job_id)) == ["hi"]  # the whole log, once it has ended


async def test_the_node_client_does_the_same_in_ocean_node_s_dialect(
    served: Served, tmp_path: Path
) -> None:
    port = served.extra["files"].server_port
    async with NodeClient(served.base_url + "/node", Key.random()) as client:
        job = await client.start(
            [LOCAL_DID, f"http://127.0.0.1:{port}/data.csv"],
            rawcode='echo "mode=$MODE"; cat /data/inputs/*/0 > $OUTPUTS/all.txt',
            resources={"cpu": 1},
            max_duration=30,
            envs={"MODE": "node"},
            image="localcompute/busybox",
            entrypoint="sh $ALGO",
        )
        assert job.environment == ENV and job.raw["maxJobDuration"] == 30
        done = await client.wait(job.job_id, poll=0.05)
        assert (done.status, done.exit_code, done.termination_reason) == (70, 0, "completed")
        assert [r.filename for r in done.results] == [
            "configuration.log",
            "algorithm.log",
            "outputs.tar",
            "receipt.json",
        ]
        log = await client.download(job.job_id, "algorithm.log", tmp_path)
        assert log.read_text() == "mode=node\n"
        tar = await client.download(job.job_id, "outputs.tar", tmp_path)
        assert tar.stat().st_size == done.results[2].filesize
        # Every result the node lists, downloaded, checks against the receipt under the
        # node's own names (configuration.log), outputs.tar a subject of its own.
        for name in ("configuration.log", "receipt.json"):
            await client.download(job.job_id, name, tmp_path)
        receipt = verify_receipt(tmp_path / "receipt.json", results=tmp_path)
        assert [s.name for s in receipt.outputs] == ["outputs.tar"]
        assert [j.job_id for j in await client.jobs()] == [job.job_id]  # with a token

        sleeper = await client.start(
            [LOCAL_DID], rawcode="sleep 30", image="localcompute/busybox", entrypoint="sh $ALGO"
        )
        await client.stop(sleeper.job_id)
        stopped = await client.wait(sleeper.job_id, poll=0.05)
        assert stopped.termination_reason == "stopped"
        with pytest.raises(RemoteError, match="no delete"):
            await client.delete(sleeper.job_id)

        dead = await client.start(
            ["http://127.0.0.1:9/gone.csv"],
            rawcode="true",
            image="localcompute/busybox",
            entrypoint="sh $ALGO",
        )
        failed = await client.wait(dead.job_id, poll=0.05)
        assert failed.status == 31 and "download failed" in failed.reason


class CountingClient(Client):
    """A client that counts its status reads: how many round trips a wait() cost."""

    reads = 0

    async def status(self, job_id: str) -> RemoteJob:
        self.reads += 1
        return await super().status(job_id)


async def test_wait_listens_to_the_event_stream_instead_of_polling(
    served: Served, gates: Gates
) -> None:
    gate = gates()
    async with CountingClient(served.base_url, Key.random()) as client:
        job = await client.start([LOCAL_DID], rawcode=f"{gate.wait}; echo done", **SHELL)

        async def let_it_end() -> None:
            while (await Client.status(client, job.job_id)).status < 40:
                await asyncio.sleep(0.02)
            await asyncio.sleep(1.0)  # a second at 40: a 0.02 s poll would read it 50 times
            await gate.open()

        opener = asyncio.create_task(let_it_end())
        done = await client.wait(job.job_id, poll=0.02, max_wait=30)
        await opener
        assert done.status == 70 and done.exit_code == 0
        assert client._events_offered is not False
        assert client.reads <= 3, f"{client.reads} status reads: it polled"


async def test_wait_polls_a_server_without_an_event_stream(tmp_path: Path) -> None:
    """A classic Ocean provider has no computeEvents: 404, and wait() polls as before."""
    from aiohttp import web

    reads = 0

    async def status(request: web.Request) -> web.Response:
        nonlocal reads
        reads += 1
        job = {"jobId": "j1", "status": 70 if reads >= 3 else 40, "owner": "0x0"}
        job["statusText"] = "Job completed" if reads >= 3 else "Running algorithm"
        return web.json_response([job])

    async def nonce(request: web.Request) -> web.Response:
        return web.json_response({"nonce": 0})

    app = web.Application()
    app.router.add_get("/api/services/compute", status)
    app.router.add_get("/api/services/nonce", nonce)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with Client(f"http://127.0.0.1:{port}", Key.random()) as client:
            done = await client.wait("j1", poll=0.01, max_wait=10)
            assert done.status == 70 and reads == 3
            assert client._events_offered is False, "asked once, then it polls"
    finally:
        await runner.cleanup()


async def test_wait_reports_each_new_status_in_order_from_the_stream(client: Client) -> None:
    job = await client.start([LOCAL_DID], rawcode="echo hi", **SHELL)
    seen: list[int] = []
    done = await client.wait(job.job_id, on_status=lambda j: seen.append(j.status), max_wait=30)
    assert done.status == 70 and seen[-1] == 70
    assert seen == sorted(set(seen)), "each status once, in order"
