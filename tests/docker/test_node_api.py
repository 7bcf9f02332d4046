"""Ocean Node's dialect on the real Docker engine, against a server started as the README
starts it: what the algorithm sees, and what comes back in outputs.tar."""

from __future__ import annotations

import io
import tarfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from tests.node_client import NodeClient, raw_algorithm
from tests.served import LOCAL_DID, Served, running_server

pytestmark = pytest.mark.docker

SEES = (
    'echo "mode=$MODE dids=$DIDS"; '
    'for f in /data/inputs/*/0; do cat "$f"; done > $OUTPUTS/inputs.txt; '
    "touch /data/inputs/x 2>/dev/null && echo inputs-writable || echo inputs-read-only; "
    "mkdir -p $OUTPUTS/nested && id -u > $OUTPUTS/nested/uid; "
    "exit 3"
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, busybox_image: str) -> Iterator[Served]:
    with running_server(tmp_path_factory.mktemp("node")) as server:
        yield server


@pytest.fixture
async def client(served: Served) -> AsyncIterator[NodeClient]:
    async with aiohttp.ClientSession() as session:
        yield NodeClient(session, served.base_url)


async def test_a_free_job_sees_ocean_s_layout_and_its_outputs_come_back_as_one_tar(
    client: NodeClient,
) -> None:
    algorithm: dict[str, Any] = raw_algorithm(SEES)
    algorithm["envs"] = {"MODE": "fast"}
    code, answer = await client.start(
        algorithm,
        [{"documentId": LOCAL_DID}],
        resources=[{"id": "ram", "amount": 1}, {"id": "cpu", "amount": 1}],
    )
    assert code == 200, answer
    job_id = answer[0]["jobId"]
    done = await client.wait(job_id, timeout=90)
    # A non-zero exit is still "finished" on Ocean Node; terminationDetails says how.
    assert (done["status"], done["statusText"]) == (70, "Job finished")
    assert done["terminationDetails"]["exitCode"] == 3
    assert done["terminationDetails"]["reason"] == "failed"
    names = [r["filename"] for r in done["results"]]
    assert names == ["configuration.log", "algorithm.log", "outputs.tar", "receipt.json"]

    code, log, _ = await client.result(job_id, 1)
    assert code == 200
    assert log.decode() == (
        f'mode=fast dids=["{LOCAL_DID.removeprefix("did:op:")}"]\ninputs-read-only\n'
    )
    code, tar_bytes, _ = await client.result(job_id, 2)
    assert code == 200
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        assert sorted(tar.getnames()) == [
            "outputs",
            "outputs/inputs.txt",
            "outputs/nested",
            "outputs/nested/uid",
        ]
        read = tar.extractfile
        assert read("outputs/inputs.txt").read() == b"local dataset\n"  # type: ignore[union-attr]
        assert read("outputs/nested/uid").read().strip() != b"0"  # type: ignore[union-attr]
