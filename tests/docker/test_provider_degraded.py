"""With the Docker engine gone, starts answer 503 while status and results still work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import docker
import pytest
from aiohttp import web

from localcompute.settings import DatasetSettings, ProviderSettings
from localcompute.web.app import create_app
from localcompute.web.context import ENGINE
from tests.conftest import STARTED_INSTANCES, make_settings
from tests.docker.served import LOCAL_DID, Consumer

pytestmark = pytest.mark.docker
RAW = {
    "meta": {
        "rawcode": "echo result > $OUTPUTS/r.txt",
        "container": {"image": "localcompute/busybox", "entrypoint": "sh $ALGO"},
    }
}


@pytest.fixture
async def app_url(
    data_dir: Path, tmp_path: Path, busybox_image: str
) -> AsyncIterator[tuple[web.Application, str]]:
    local = tmp_path / "datasets" / "d.csv"
    local.parent.mkdir()
    local.write_text("data\n")
    settings = make_settings(data_dir, environments=[{"id": "test"}]).model_copy(
        update={
            "provider": ProviderSettings(
                private_key="0x" + "22" * 32, dataset_roots=[local.parent]
            ),
            "datasets": [DatasetSettings(did=LOCAL_DID, files=[str(local)])],
        }
    )
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    try:
        await site.start()
        STARTED_INSTANCES.add(app[ENGINE].instance)
        yield app, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_docker_down_refuses_starts_but_serves_status_and_results(
    app_url: tuple[web.Application, str], tmp_path: Path
) -> None:
    app, base = app_url
    engine = app[ENGINE]
    async with aiohttp.ClientSession() as session:
        consumer = Consumer(session, base)
        status, [job] = await consumer.start(RAW)
        assert status == 200
        done = await consumer.wait_final(job["jobId"])
        assert done["status"] == 70

        # A Docker socket that hangs up on every request: the engine has gone away.
        async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        dead = await asyncio.start_unix_server(hang_up, path=str(tmp_path / "dead.sock"))
        real = engine.runtime._api
        engine.runtime._api = docker.APIClient(
            base_url=f"unix://{tmp_path / 'dead.sock'}", version="1.41"
        )
        try:
            nonce = await consumer.next_nonce()
            status, answer = await consumer.start(RAW, nonce=nonce)
            assert status == 503 and "Docker" in answer["error"]
            assert await consumer.next_nonce() == nonce, "a refused start keeps the nonce"
            [again] = await consumer.status(job["jobId"])
            assert again["status"] == 70
            async with session.get(
                base + "/api/services/computeResult",
                params=consumer.result_query(job["jobId"], 0, nonce),
            ) as r:
                assert r.status == 200 and await r.read() == b"result\n"
        finally:
            engine.runtime._api.close()
            engine.runtime._api = real
            dead.close()
            await dead.wait_closed()
