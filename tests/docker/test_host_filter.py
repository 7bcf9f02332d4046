"""The output filter runs as a process of this host once the algorithm's container is
gone (engine/helpers_here.py): what an algorithm leaves, hostile or not, must become
exactly the results, refusals and log the filter container makes of it, owned by the
job's user, and without `host_filter` (the default) the filter runs in its container."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest

from localcompute import JobStatus, TerminationReason
from localcompute.core.models import Job
from localcompute.engine import Engine
from tests.docker.conftest import EngineFactory, raw_job, wait_final
from tests.docker.test_host_fetch import Created

pytestmark = pytest.mark.docker

# Plain files, a folder (packed as a tar), and what the filter must refuse: links out to
# the host, a FIFO that would block a reader, a name crafted to break a log line, a file
# it may not write to (copied, not moved), and a sparse file (its holes stay holes).
HOSTILE = r"""
cd $OUTPUTS
echo plain > plain.txt
mkdir -p folder/deeper && echo one > folder/a.txt && echo two > folder/deeper/b.txt
ln -s /etc/shadow shadow-link
ln -s /etc folder/etc-link
mkfifo blocking-fifo
printf 'x' > "$(printf 'evil\nname.txt')"
echo locked > locked.txt && chmod 444 locked.txt
dd if=/dev/zero of=sparse.bin bs=1 count=0 seek=8M 2>/dev/null
echo tail >> sparse.bin
"""


def content(path: Path) -> object:
    """A tar's entries as tarfile reads them (names, types, sizes, modes, each file's
    sha256: the mtimes differ from run to run); any other file's sha256."""
    if path.suffix != ".tar":
        return hashlib.sha256(path.read_bytes()).hexdigest()
    with tarfile.open(path) as tar:
        return [
            (
                m.name,
                m.type,
                m.size,
                m.mode,
                hashlib.sha256(tar.extractfile(m).read()).hexdigest()  # type: ignore[union-attr]
                if m.isfile()
                else None,
            )
            for m in tar.getmembers()
        ]


async def filtered(engine: Engine, script: str, **spec: Any) -> tuple[Job, dict[str, Any]]:
    """The job, and what its results are: each file's sha256, owner and mode, and the
    filter's log without its timings."""
    job = await wait_final(engine, await engine.submit(raw_job(script).model_copy(update=spec)))

    def describe() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for index, result in enumerate(job.results):
            if result.type in ("publishLog", "receipt"):
                continue  # they name when they were written
            path = engine.result_path(job, index)
            info = path.stat()
            seen[result.filename] = (
                result.type,
                content(path),
                f"{info.st_uid}:{info.st_gid}",
                stat.filemode(info.st_mode),
                info.st_blocks * 512 < 1024 * 1024 if result.filename == "sparse.bin" else None,
            )
        return seen

    return job, await asyncio.to_thread(describe)


@pytest.mark.parametrize("archive", [False, True], ids=["files", "archive"])
async def test_hostile_outputs_become_the_same_results_on_the_host_as_in_the_container(
    engine_factory: EngineFactory, archive: bool
) -> None:
    here = await engine_factory(host_filter=True)
    made_here = Created(here)
    job_here, seen_here = await filtered(here, HOSTILE, output_archive=archive)
    assert made_here.stages() == ["algorithm"], made_here.names
    await here.close()  # the data folder is one server's at a time

    contained = await engine_factory(host_filter=False)
    made_contained = Created(contained)
    job_contained, seen_contained = await filtered(contained, HOSTILE, output_archive=archive)
    assert made_contained.stages() == ["algorithm", "filter"]

    for job in (job_here, job_contained):
        assert job.termination_reason == TerminationReason.COMPLETED, job.status_text
    assert seen_here == seen_contained
    assert "filter.log" in seen_here
    if not archive:
        assert {"plain.txt", "locked.txt", "sparse.bin"} <= set(seen_here)
        assert not {"shadow-link", "blocking-fifo"} & set(seen_here)
        # Moved out of the job's quota as the job's user, as the container's user would.
        owners = {owner for kind, _, owner, _, _ in seen_here.values() if kind == "output"}
        assert owners == {"1000:1000"}, seen_here
        assert seen_here["sparse.bin"][4], "the sparse file's holes were filled in"


async def test_a_filter_on_the_host_is_not_root_and_cannot_reach_the_servers_files(
    engine_factory: EngineFactory, tmp_path: Path
) -> None:
    """An algorithm that leaves a link to a file only root may read gets it refused,
    never copied: the filter does not follow links, and runs as the job's user."""
    secret = tmp_path / "secret.txt"
    await asyncio.to_thread(secret.write_text, "root's alone")
    await asyncio.to_thread(secret.chmod, 0o600)
    assert os.geteuid() == 0, "the docker layer runs as root"
    engine = await engine_factory(host_filter=True)
    script = (
        f"ln -s {secret} $OUTPUTS/secret.txt; ln $OUTPUTS/../outputs $OUTPUTS/x 2>/dev/null; true"
    )
    job, seen = await filtered(engine, script)
    assert job.status == JobStatus.JOB_COMPLETED and job.termination_reason == "completed"
    assert "secret.txt" not in seen
    log = next(
        engine.result_path(job, i).read_text()
        for i, r in enumerate(job.results)
        if r.filename == "filter.log"
    )
    assert "secret.txt" in log and "refused" in log.lower(), log
