"""What the output filter's container sees of a job, on the real engine: outputs, results
and meta in one mount, so that where one file system holds them (a watched folder) an
output moves into the results by a rename, the very file the algorithm wrote and no second
copy; the algorithm's log read only; and of the data sets, the fetch's instructions (URLs,
headers) and the server's logs nothing at all."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from localcompute import JobStatus
from localcompute.runtime.workspace import Workspace
from tests.conftest import FileServer
from tests.docker.conftest import EngineFactory, raw_job, result_text, url_input, wait_final

pytestmark = pytest.mark.docker

# Run in the filter's place, with the filter's mounts (it may be made while the algorithm
# runs, so the data sets are there to be seen).
HIDDEN = ("data/inputs", "data/transformations", "data/ddos", "spec", "adminlogs")
PROBE = (
    f"cd /job; for d in {' '.join(HIDDEN)}; do "
    'n=$(ls -A $d 2>/dev/null | wc -l); c=$(grep -c " /job/$d tmpfs " /proc/mounts); '
    'echo "$d holds $n, covered $c"; done; '
    "touch data/inputs/x 2>/dev/null && echo inputs writable || echo inputs read-only; "
    "touch data/logs/x 2>/dev/null && echo logs writable || echo logs read-only"
)
ALGORITHM = (
    "head -c 3000000 /dev/urandom > $OUTPUTS/out.bin; "
    "echo inode $(stat -c %i $OUTPUTS/out.bin); cat /data/inputs/*/0"
)


async def test_the_filter_sees_outputs_and_results_in_one_mount_and_no_data_set(
    engine_factory: EngineFactory, file_server: FileServer, tmp_path: Path
) -> None:
    engine = await engine_factory(pool={"disk_quota": "watch"})
    runtime, probed = engine.runtime, tmp_path / "probe.log"
    create = runtime.create

    async def probing(spec: Any) -> None:
        if spec.name.endswith("-filter"):
            probe = dataclasses.replace(
                spec, name=f"{spec.name}-probe", entrypoint=["sh", "-c"], command=[PROBE]
            )
            await create(probe)
            await runtime.start(probe.name)
            await runtime.wait(probe.name)
            await runtime.logs_to_file(probe.name, probed, limit=65536, append=False)
            await runtime.remove(probe.name)
        await create(spec)

    runtime.create = probing  # type: ignore[method-assign]
    url = file_server.add("secret.csv", "the data set\n")
    job = await wait_final(
        engine, await engine.submit(raw_job(ALGORITHM, inputs=[url_input("did:op:aa", url)]))
    )
    assert job.status == JobStatus.JOB_COMPLETED, job.status_text
    said = await asyncio.to_thread(probed.read_text)
    assert said.splitlines() == [
        *(f"{d} holds 0, covered 1" for d in HIDDEN),
        "inputs read-only",
        "logs read-only",
    ], said
    log = result_text(engine, job, "algorithm.log")
    assert "the data set" in log, log  # the algorithm had its input; the filter did not
    written = int(log.split("inode ", 1)[1].split()[0])
    [out] = [r for r in job.results if r.filename == "out.bin"]
    ws = Workspace.of(engine.settings.data_dir, job.job_id)
    published = await asyncio.to_thread((ws.root / out.path).stat)
    # Renamed: the algorithm's own file, not a copy of it.
    assert published.st_ino == written and published.st_size == out.filesize == 3_000_000
