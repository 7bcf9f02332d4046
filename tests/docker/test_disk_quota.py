"""A job's disk quota, on each mechanism this host offers: what the job writes never passes it
(by more than what it writes in the watcher's half second, where only a watcher can), the job
ends with reason `disk`, what it wrote within the quota is published, and nothing is left
mounted. Nor does publishing make a second copy: sampled throughout the run and the publish,
the job's folders never hold more than the quota, the logs and a stated slack."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcompute import FileSource, InputSpec, Job, JobStatus, TerminationReason
from localcompute.engine import Engine
from localcompute.runtime.local import disk
from localcompute.runtime.local.disk import IMAGE_NAME
from localcompute.runtime.quota import folder_size
from localcompute.runtime.workspace import Workspace
from tests.conftest import FileServer
from tests.docker.conftest import EngineFactory, raw_job, result_text, wait_final

pytestmark = pytest.mark.docker

MIB = 1024 * 1024
QUOTA_GB = 0.1  # 102.4 MiB
QUOTA = int(QUOTA_GB * 1024**3)
# 400 MiB in 10 MiB pieces, about 100 MiB/s.
WRITER = (
    "i=0; while [ $i -lt 40 ]; do "
    "dd if=/dev/zero of=$OUTPUTS/big bs=1M count=10 seek=$((i*10)) conv=notrunc 2>/dev/null "
    "|| { echo write $i failed; exit 3; }; i=$((i+1)); sleep 0.1; done; echo wrote all"
)


def env(**extra: object) -> list[dict[str, object]]:
    return [{"id": "test", "cpu": 0.5, "disk_gb": QUOTA_GB, "max_job_duration": 60, **extra}]


def job_folder_size(root: Path) -> int:
    """What the job's folder holds on the host now (a loop image counts what it holds)."""
    return folder_size(root)


async def check_quota_hit(engine_factory: EngineFactory, **pool: object) -> None:
    engine = await engine_factory(environments=env(), pool=pool)
    job = await wait_final(engine, await engine.submit(raw_job(WRITER)))
    assert job.status == JobStatus.JOB_COMPLETED
    assert job.termination_reason is TerminationReason.DISK, job.status_text
    assert job.status_text == "Disk quota exceeded"
    log = result_text(engine, job, "algorithm.log")
    assert "wrote all" not in log
    # What it wrote within the quota is published, the rest never reached the disk.
    [output] = [r for r in job.results if r.type == "output"]
    # A watcher is soft: the writer may overshoot by what it writes before it is killed.
    assert 10 * MIB <= output.filesize <= (QUOTA if engine.disk.hard else 2 * QUOTA)
    ws = Workspace.of(engine.settings.data_dir, job.job_id)
    assert job_folder_size(ws.root) <= output.filesize + MIB  # the results, and the logs
    assert not ws.data.exists() and not (ws.root / IMAGE_NAME).exists()
    assert not await asyncio.to_thread(os.path.ismount, ws.data)


async def test_a_loop_mounted_image_stops_a_writer_at_the_quota(
    engine_factory: EngineFactory,
) -> None:
    await check_quota_hit(engine_factory, disk_quota="loop")


async def test_a_watcher_stops_a_writer_soon_after_the_quota(
    engine_factory: EngineFactory,
) -> None:
    await check_quota_hit(engine_factory, disk_quota="watch")


async def test_inputs_larger_than_the_quota_fail_the_fetch_with_the_reason(
    engine_factory: EngineFactory, file_server: FileServer
) -> None:
    url = file_server.add("huge.bin", b"\0" * (150 * MIB))
    engine = await engine_factory(environments=env(), pool={"disk_quota": "loop"})
    spec = raw_job("echo never", inputs=[InputSpec(did="did:op:huge", files=[FileSource(url=url)])])
    job = await wait_final(engine, await engine.submit(spec))
    assert job.status == JobStatus.DATA_PROVISIONING_FAILED
    assert "the inputs do not fit the job's disk quota of 102.4 MiB" in job.detail
    assert "the inputs do not fit" in result_text(engine, job, "configure.log")
    ws = Workspace.of(engine.settings.data_dir, job.job_id)
    assert not ws.data.exists() and not (ws.root / IMAGE_NAME).exists()


@pytest.fixture
def xfs_data_dir(tmp_path: Path, data_dir: Path) -> Iterator[Path]:
    """data_dir on an XFS file system mounted with prjquota, in a loop image of its own."""
    if shutil.which("mkfs.xfs") is None:
        pytest.fail("mkfs.xfs is missing: scripts/run setup installs xfsprogs")
    image, mountpoint = tmp_path / "xfs.img", tmp_path / "xfs"
    with image.open("wb") as f:
        f.truncate(512 * MIB)
    subprocess.run(["mkfs.xfs", "-q", str(image)], check=True)
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-o", "loop,prjquota", str(image), str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        kernel = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
        said = [line for line in kernel.splitlines() if "XFS" in line and "quota" in line]
        # This machine's kernel (CI's) is built without XFS quotas. Said, not hidden.
        pytest.skip(
            "XFS project quotas cannot work on this host: mount -o prjquota failed: "
            f"{mounted.stderr.strip().splitlines()[0]}"
            + (f"; the kernel says: {said[-1].split('] ', 1)[-1]}" if said else "")
        )
    data_dir.symlink_to(mountpoint, target_is_directory=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


async def test_an_xfs_project_quota_stops_a_writer_at_the_quota(
    engine_factory: EngineFactory, xfs_data_dir: Path
) -> None:
    quota, _ = await asyncio.to_thread(disk.choose, xfs_data_dir, "auto")
    assert quota.mechanism == "xfs"  # the strongest, where it works
    await check_quota_hit(engine_factory, disk_quota="xfs")


def test_auto_picks_the_strongest_mechanism_and_says_why(tmp_path: Path) -> None:
    quota, passed_over = disk.choose(tmp_path / "var", "auto")
    if os.geteuid() == 0:
        assert quota.mechanism in ("xfs", "loop")
    else:
        assert quota.mechanism == "watch" and "loop mounts need root" in passed_over
    if quota.mechanism != "xfs":
        assert "xfs:" in passed_over


# A moving copy holds at most one chunk twice (the helper's MOVE_CHUNK, 4 MiB), and a
# file system's own blocks are a little more: the bound's stated slack.
SLACK = 6 * MIB


def footprint(root: Path) -> int:
    """Bytes allocated under `root` on its own file system (du -sx): a loop image counts
    as what it holds, never together with what is mounted from it."""
    return folder_size(root, one_file_system=True)


class Sampler:
    """The largest footprint of a folder, measured over and over in a thread."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.peak = 0
        self.samples = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, footprint(self.root))
            self.samples += 1

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()


async def run_sampled(engine: Engine, script: str) -> tuple[Job, Sampler]:
    with Sampler(engine.settings.data_dir / "jobs") as sampler:
        job = await wait_final(engine, await engine.submit(raw_job(script)))
    assert sampler.samples > 10, sampler.samples
    return job, sampler


def logs_size(engine: Engine, job: Job) -> int:
    return folder_size(Workspace.of(engine.settings.data_dir, job.job_id).adminlogs)


def check_peak(engine: Engine, job: Job, sampler: Sampler, quota: int = QUOTA) -> None:
    bound = quota + logs_size(engine, job) + SLACK
    said = (
        f"{engine.disk.mechanism}: peak {sampler.peak / MIB:.1f} MiB, bound {bound / MIB:.1f} MiB"
    )
    print(said)
    assert sampler.peak <= bound, said


MECHANISMS = pytest.mark.parametrize("mechanism", ["loop", "watch"])


@MECHANISMS
async def test_a_job_past_its_quota_never_holds_more_than_it_on_the_host(
    engine_factory: EngineFactory, mechanism: str
) -> None:
    """Its outputs are published by moving them, not by a second copy beside them."""
    await check_past_quota(engine_factory, mechanism)


async def test_a_job_past_its_xfs_quota_never_holds_more_than_it_on_the_host(
    engine_factory: EngineFactory, xfs_data_dir: Path
) -> None:
    await check_past_quota(engine_factory, "xfs")


async def check_past_quota(engine_factory: EngineFactory, mechanism: str) -> None:
    engine = await engine_factory(environments=env(), pool={"disk_quota": mechanism})
    job, sampler = await run_sampled(engine, WRITER)
    assert job.termination_reason is TerminationReason.DISK, job.status_text
    [output] = [r for r in job.results if r.type == "output"]
    # A watcher is soft: what it lets the writer overshoot by is the job's quota then.
    check_peak(engine, job, sampler, QUOTA if engine.disk.hard else max(QUOTA, output.filesize))


# Within the quota: a 30 MiB top-level file and a folder of two 15 MiB files (one tar),
# each printed with its sha256 so what is published can be checked against what was written.
WITHIN = (
    "set -e; mkdir $OUTPUTS/dir; "
    "dd if=/dev/urandom of=$OUTPUTS/top.bin bs=1M count=30 2>/dev/null; "
    "dd if=/dev/urandom of=$OUTPUTS/dir/a.bin bs=1M count=15 2>/dev/null; "
    "dd if=/dev/urandom of=$OUTPUTS/dir/b.bin bs=1M count=15 2>/dev/null; "
    "cd $OUTPUTS; sha256sum top.bin dir/a.bin dir/b.bin"
)


@MECHANISMS
async def test_results_within_the_quota_are_complete_and_never_a_second_copy(
    engine_factory: EngineFactory, mechanism: str
) -> None:
    await check_within_quota(engine_factory, mechanism)


async def test_results_within_an_xfs_quota_are_complete_and_never_a_second_copy(
    engine_factory: EngineFactory, xfs_data_dir: Path
) -> None:
    await check_within_quota(engine_factory, "xfs")


async def check_within_quota(engine_factory: EngineFactory, mechanism: str) -> None:
    engine = await engine_factory(environments=env(), pool={"disk_quota": mechanism})
    job, sampler = await run_sampled(engine, WITHIN)
    assert job.termination_reason is TerminationReason.COMPLETED, job.detail
    log = result_text(engine, job, "algorithm.log")
    written = {name: sha for sha, name in (line.split() for line in log.splitlines())}
    ws = Workspace.of(engine.settings.data_dir, job.job_id)
    by_name = {r.filename: r for r in job.results}
    assert by_name["top.bin"].sha256 == written["top.bin"]
    assert (
        hashlib.sha256((ws.root / by_name["top.bin"].path).read_bytes()).hexdigest()
        == (written["top.bin"])
    )
    tar_path = ws.root / by_name["outputs.tar"].path
    assert hashlib.sha256(tar_path.read_bytes()).hexdigest() == by_name["outputs.tar"].sha256
    with tarfile.open(tar_path) as tar:
        for name in ("dir/a.bin", "dir/b.bin"):
            member = tar.extractfile(name)
            assert member is not None
            assert hashlib.sha256(member.read()).hexdigest() == written[name], name
    check_peak(engine, job, sampler)
