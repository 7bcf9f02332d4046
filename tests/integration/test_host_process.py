"""A helper run as a process of this host (runtime/hostproc.py): the job's user, its
descriptors, its end with the server, a stop and a capped log, as a container's would."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcompute.runtime.hostproc import (
    HostProcess,
    by_descriptor,
    can_run_as,
    helper_python,
    reachable_by,
)

ROOT = os.geteuid() == 0
JOB_USER = "1000:1000" if ROOT else f"{os.getuid()}:{os.getgid()}"


def python_for_job_user() -> str:
    python = helper_python(*(int(n) for n in JOB_USER.split(":")))
    assert python is not None, "no interpreter the job's user can run"
    return python


async def run(code: str, *, pass_fds: tuple[int, ...] = (), limit: int = 10_000) -> str:
    process = HostProcess(
        [python_for_job_user(), "-c", code], user=JOB_USER, pass_fds=pass_fds, log_limit=limit
    )
    await process.start()
    exit_ = await process.wait()
    assert exit_.exit_code == 0, process.output.decode()
    return process.output.decode()


async def test_it_runs_as_the_job_user_and_reaches_a_shut_folder_only_by_descriptor(
    tmp_path: Path,
) -> None:
    shut = tmp_path / "shut"
    shut.mkdir(mode=0o700)
    (shut / "data.csv").write_text("rows")
    (shut / "data.csv").chmod(0o644)
    fd = os.open(shut / "data.csv", os.O_RDONLY)
    try:
        code = (
            "import os\n"
            "print(os.getuid(), os.getgid(), os.getgroups())\n"
            f"print(open({by_descriptor(fd)!r}).read())\n"
            "try:\n"
            f"    open({str(shut / 'data.csv')!r})\n"
            "except PermissionError:\n"
            "    print('path refused')\n"
            "print(sorted(os.environ))\n"
        )
        out = (await run(code, pass_fds=(fd,))).splitlines()
    finally:
        os.close(fd)
    uid, gid = JOB_USER.split(":")
    assert out[0] == f"{uid} {gid} []" if ROOT else out[0].startswith(f"{uid} {gid}")
    assert out[1] == "rows"
    if ROOT:
        assert out[2] == "path refused"
    # Nothing of the server's environment: no token, no proxy, no DOCKER_HOST.
    # (LC_CTYPE is Python's own, where it coerces a C locale.)
    assert set(eval(out[-1])) - {"LC_CTYPE"} == {"PATH", "PYTHONUNBUFFERED"}


async def test_a_file_the_job_user_may_not_read_stays_shut_when_handed_over(
    tmp_path: Path,
) -> None:
    if not ROOT:
        pytest.skip("needs a job user other than the server's: the layer runs as root in CI")
    secret = tmp_path / "secret"
    secret.write_text("root only")
    secret.chmod(0o600)
    fd = os.open(secret, os.O_RDONLY)
    try:
        code = (
            "try:\n"
            f"    open({by_descriptor(fd)!r}).read(); print('read it')\n"
            "except PermissionError:\n"
            "    print('refused')\n"
        )
        assert (await run(code, pass_fds=(fd,))).strip() == "refused"
    finally:
        os.close(fd)


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A folder every user may search (pytest's own tmp folders are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="lc-reach-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def test_reachable_by_follows_each_folder_above(open_tmp: Path) -> None:
    tmp_path = open_tmp / "above"
    tmp_path.mkdir()
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o755)
    (open_dir / "f").write_text("x")
    (open_dir / "f").chmod(0o644)
    tmp_path.chmod(0o700)
    assert not reachable_by(open_dir / "f", 1000, 1000)  # a folder above shuts it out
    tmp_path.chmod(0o711)
    assert reachable_by(open_dir / "f", 1000, 1000)
    (open_dir / "f").chmod(0o600)
    assert not reachable_by(open_dir / "f", 1000, 1000)
    assert reachable_by(open_dir / "f", 0, 0)
    assert not reachable_by(tmp_path / "missing", 1000, 1000)


def test_who_the_server_may_start_a_process_as() -> None:
    assert can_run_as(f"{os.geteuid()}:{os.getegid()}")
    assert can_run_as("1000:1000") == ROOT
    assert not can_run_as("nobody")  # a name is Docker's to resolve


async def test_a_stop_terms_then_kills_and_reports_the_signal_as_docker_does() -> None:
    process = HostProcess(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(15, signal.SIG_IGN); "
            "print('up', flush=True); time.sleep(60)",
        ],
        user=f"{os.geteuid()}:{os.getegid()}",
        log_limit=1000,
    )
    await process.start()
    while b"up" not in process.output:
        await asyncio.sleep(0.01)
    began = time.monotonic()
    await process.stop(0.3)
    exit_ = await process.wait()
    assert exit_.exit_code == 128 + signal.SIGKILL  # SIGTERM was ignored
    assert 0.25 < time.monotonic() - began < 5


async def test_its_output_is_kept_up_to_the_limit() -> None:
    process = HostProcess(
        [sys.executable, "-c", "print('x' * 100000)"],
        user=f"{os.geteuid()}:{os.getegid()}",
        log_limit=1000,
    )
    await process.start()
    await process.wait()
    # One byte past the limit: the log's writer sees it was cut and says so.
    assert len(process.output) == 1001


PARENT = """
import asyncio, sys
from localcompute.runtime.hostproc import HostProcess
async def main():
    p = HostProcess([sys.executable, "-c", "import time; time.sleep(60)"],
                    user=sys.argv[1], log_limit=100)
    await p.start()
    print(p._process.pid, flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""


def alive(pid: int) -> bool:
    """Running, not a zombie nobody has reaped yet."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_it_dies_with_the_server_that_started_it() -> None:
    user = f"{os.geteuid()}:{os.getegid()}"
    with subprocess.Popen(
        [sys.executable, "-c", PARENT, user], stdout=subprocess.PIPE, text=True
    ) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert alive(child)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if not alive(child):
                return
            time.sleep(0.02)
        os.kill(child, signal.SIGKILL)
        pytest.fail("the helper outlived the server that started it")


def test_it_starts_the_same_under_uvloop_the_loop_of_the_cli() -> None:
    # uvloop's subprocesses take no user= or group=: the change of user is the child's own.
    import uvloop

    async def main() -> str:
        return await run("import os; print(os.getuid(), os.getgid(), os.getgroups())")

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        out = runner.run(main())
    uid, gid = JOB_USER.split(":")
    assert out.split()[:2] == [uid, gid]
