from __future__ import annotations

from pathlib import Path

import pytest
from wordcount import CONTAINER, rawcode

from localcompute.client import RemoteError, SyncClient
from localcompute.pytest_plugin import LocalComputeServer
from tests.conftest import DATASET_DID


def test_the_algorithm_counts_the_words_of_the_dataset(
    localcompute_client: SyncClient, tmp_path: Path
) -> None:
    job = localcompute_client.start(
        [DATASET_DID], rawcode=rawcode(), environment="demo", **CONTAINER
    )
    done = localcompute_client.wait(job.job_id, max_wait=120)
    assert (done.status, done.exit_code) == (70, 0), done.reason
    count = localcompute_client.download(job.job_id, "count.txt", tmp_path)
    assert count.read_text().strip() == "9"
    log = localcompute_client.download(job.job_id, "algorithm.log", tmp_path)
    assert log.read_text() == "counted 9 words\n"


def test_the_server_answers_on_the_port_it_got(localcompute_server: LocalComputeServer) -> None:
    # Port 0 in the configuration: every URL the server hands out carries the real port.
    client = localcompute_server.client()
    job = client.start([DATASET_DID], rawcode="echo hi", environment="demo", **CONTAINER)
    client.wait(job.job_id, max_wait=120)
    urls = client.status(job.job_id).raw["resultsUrls"]
    assert urls and all(u.startswith(localcompute_server.url + "/") for u in urls)
    assert not localcompute_server.url.endswith(":0")


def test_another_consumer_cannot_read_the_results(localcompute_server: LocalComputeServer) -> None:
    owner, stranger = localcompute_server.client(), localcompute_server.client()
    job = owner.start([DATASET_DID], rawcode="echo private", environment="demo", **CONTAINER)
    owner.wait(job.job_id, max_wait=120)
    with pytest.raises(RemoteError) as refused:
        stranger.status(job.job_id)
    assert refused.value.status == 404
