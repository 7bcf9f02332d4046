"""A fetch with nothing to download runs as a process of this host (engine/helpers_here.py):
the algorithm must find exactly the folder the fetch container would have left, the
provider's files must reach it only as the job's user may read them, and a fetch with a
URL, or with `host_fetch = false`, still runs in its container."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from localcompute import FileSource, InputSpec, JobStatus
from localcompute.core.receipt import read_receipt
from localcompute.engine import Engine
from tests.conftest import FileServer
from tests.docker.conftest import EngineFactory, raw_job, result_text, url_input, wait_final

pytestmark = pytest.mark.docker

D1 = "did:op:" + "d4" * 32
D2 = "did:op:" + "e5" * 32

# What the algorithm finds: the tree, each file's owner, mode and content, and what it may
# write; in one output, to compare the two ways of fetching.
LOOK = r"""
{
  echo "tree:"; find /data -path /data/outputs/seen.txt -prune -o -print | sort
  echo "owners:"
  for f in $(find /data/inputs /data/transformations /data/ddos /data/outputs -print | sort); do
    echo "$f $(stat -c '%u:%g %a' $f)"
  done
  echo "content:"
  for f in $(find /data/inputs -type f | sort); do echo "$f=$(cat $f)"; done
  echo "access:"
  touch /data/inputs/x 2>/dev/null && echo inputs-writable || echo inputs-readonly
  touch /data/transformations/x 2>/dev/null && echo code-writable || echo code-readonly
  touch /data/outputs/probe 2>/dev/null && echo outputs-writable && rm /data/outputs/probe
} > /tmp/seen.txt 2>&1
mv /tmp/seen.txt $OUTPUTS/seen.txt
"""


class Created:
    """The names of the containers an engine's runtime created."""

    def __init__(self, engine: Engine) -> None:
        self.names: list[str] = []
        create = engine.runtime.create

        async def recording(spec: Any) -> None:
            self.names.append(spec.name)
            await create(spec)

        engine.runtime.create = recording  # type: ignore[method-assign]

    def stages(self) -> list[str]:
        return [name.rsplit("-", 1)[1] for name in self.names]


@pytest.fixture
def datasets(tmp_path: Path) -> list[InputSpec]:
    # Under a folder only root may enter (pytest's tmp folders are 0700): the job's user
    # could not reach these files by their paths, only as they are handed to it.
    folder = tmp_path / "private"
    folder.mkdir(mode=0o700)
    one, two = folder / "one.csv", folder / "two.csv"
    one.write_text("first dataset")
    two.write_text("second dataset")
    for path in (one, two):
        path.chmod(0o644)
    return [
        InputSpec(did=D1, files=[FileSource(path=str(one))]),
        InputSpec(did=D2, files=[FileSource(path=str(two))], ddo={"id": D2}),
    ]


def digests(inputs: list[InputSpec]) -> list[str]:
    files = [Path(str(f.path)) for item in inputs for f in item.files]
    return sorted(hashlib.sha256(path.read_bytes()).hexdigest() for path in files)


async def look(engine: Engine, inputs: list[InputSpec]) -> tuple[str, str]:
    job = await wait_final(engine, await engine.submit(raw_job(LOOK, inputs=inputs)))
    assert job.status == JobStatus.JOB_COMPLETED, job.detail
    configure = result_text(engine, job, "configure.log")
    receipt = read_receipt(engine.result_path(job, len(job.results) - 1).read_bytes())
    inputs_read = sorted(d["digest"]["sha256"] for d in receipt.dependencies("input"))
    assert inputs_read == await asyncio.to_thread(digests, inputs)
    return result_text(engine, job, "seen.txt"), configure


async def test_a_fetch_of_local_files_runs_on_the_host_and_leaves_the_same_folder(
    engine_factory: EngineFactory, datasets: list[InputSpec]
) -> None:
    here = await engine_factory()
    made_here = Created(here)
    seen_here, log_here = await look(here, datasets)
    # The fetch ran as a process of this host; the filter, by default, in its container.
    assert made_here.stages() == ["algorithm", "filter"], made_here.names
    await here.close()  # the data folder is one server's at a time

    contained = await engine_factory(host_fetch=False)
    made_contained = Created(contained)
    seen_contained, log_contained = await look(contained, datasets)
    assert made_contained.stages() == ["fetch", "algorithm", "filter"]

    assert seen_here == seen_contained
    assert "inputs-readonly" in seen_here and "code-readonly" in seen_here
    assert "outputs-writable" in seen_here
    owners = dict(
        line.rsplit(" ", 2)[:2]
        for line in seen_here.split("owners:\n")[1].split("content:\n")[0].splitlines()
    )
    # What the fetch wrote is the job user's, as in its container; the folders are the
    # server's, open to that user.
    fetched = {path: who for path, who in owners.items() if path.count("/") > 2}
    assert fetched and set(fetched.values()) == {"1000:1000"}, owners
    assert owners["/data/transformations/algorithm"] == "1000:1000"
    assert log_here == log_contained
    assert str(datasets[0].files[0].path) not in log_here, "a dataset's path leaked"


async def test_a_file_the_job_user_may_not_read_fails_as_in_the_container(
    engine_factory: EngineFactory, datasets: list[InputSpec]
) -> None:
    secret = Path(str(datasets[0].files[0].path))
    # Root's alone: the job's user (1000) may not read it.
    await asyncio.to_thread(secret.chmod, 0o600)
    assert os.geteuid() == 0, "the docker layer runs as root"
    results = []
    for host_fetch in (True, False):
        engine = await engine_factory(host_fetch=host_fetch)
        job = await wait_final(engine, await engine.submit(raw_job("true", inputs=datasets)))
        results.append((job.status, job.detail))
        await engine.close()
    assert results[0] == results[1]
    status, detail = results[0]
    assert status == JobStatus.DATA_PROVISIONING_FAILED
    assert "Permission denied" in detail


async def test_a_fetch_that_downloads_still_runs_in_its_container(
    engine_factory: EngineFactory, file_server: FileServer, datasets: list[InputSpec]
) -> None:
    engine = await engine_factory()
    made = Created(engine)
    inputs = [datasets[0], url_input(D2, file_server.add("two.csv", "downloaded"))]
    job = await wait_final(engine, await engine.submit(raw_job("true", inputs=inputs)))
    assert job.status == JobStatus.JOB_COMPLETED, job.detail
    # The download needs the fetch container.
    assert made.stages() == ["fetch", "algorithm", "filter"]
