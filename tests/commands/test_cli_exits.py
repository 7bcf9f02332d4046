"""`localcompute jobs` and `run --server` as a person types them, against the served
provider API over the FakeRuntime: what they print, and the exit code of each way they end
(the one table in localcompute/cli/exits.py)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from localcompute.cli import exits
from localcompute.client import Client, Key, RemoteJob
from tests.served import LOCAL_DID, Served, fake_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

SHELL = {"image": "localcompute/busybox", "tag": "latest", "entrypoint": "sh $ALGO"}
KEY = "0x" + "5e" * 32


@dataclass
class Done:
    code: int
    out: str
    err: str


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    async with fake_server(tmp_path_factory.mktemp("cli")) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module")
async def client(served: Served) -> AsyncIterator[Client]:
    async with Client(served.base_url, Key.from_hex(KEY, "the test key")) as c:
        yield c


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "consumer.key"
    path.write_text(KEY)
    return path


async def localcompute(*args: str, cwd: Path, closed_stdout: bool = False) -> Done:
    """The command in a process of its own; `closed_stdout`: its stdout is a pipe nobody
    reads any more, as under `| head` once head has left."""
    read_end, write_end = os.pipe() if closed_stdout else (-1, -1)
    if closed_stdout:
        os.close(read_end)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "localcompute",
        *args,
        cwd=cwd,
        stdout=write_end if closed_stdout else asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "XDG_CONFIG_HOME": str(cwd / "config")},
    )
    if closed_stdout:
        os.close(write_end)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return Done(process.returncode, (out or b"").decode(), err.decode())


async def finished(client: Client, rawcode: str = "echo hello") -> RemoteJob:
    job = await client.start([LOCAL_DID], rawcode=rawcode, **SHELL)
    return await client.wait(job.job_id, poll=0.05)


async def test_run_on_a_dataset_the_provider_does_not_serve_exits_with_the_input_code(
    served: Served, key_file: Path, tmp_path: Path
) -> None:
    (tmp_path / "algo.sh").write_text("echo hi")
    done = await localcompute(
        "run",
        "algo.sh",
        "--image",
        "localcompute/busybox",
        "--server",
        served.base_url,
        "--input",
        "did:op:1234",
        "--key-file",
        str(key_file),
        cwd=tmp_path,
    )
    assert done.code == exits.EXIT_INPUT_UNAVAILABLE == 65
    assert done.err == (
        "localcompute run: dataset did:op:1234: did_not_found "
        "(the provider serves no dataset with this DID)\n"
    )


async def test_jobs_stop_prints_the_job_as_the_stop_left_it(
    served: Served, client: Client, key_file: Path, tmp_path: Path
) -> None:
    where = ["--server", served.base_url, "--key-file", str(key_file)]
    job = await client.start([LOCAL_DID], rawcode="sleep 30", **SHELL)
    while (await client.status(job.job_id)).status < 40:
        await asyncio.sleep(0.05)
    stopped = await localcompute("jobs", "stop", job.job_id, *where, cwd=tmp_path)
    assert stopped.code == 0, stopped.err
    state = re.search(r"^state\s+(.*)$", stopped.out, re.MULTILINE)
    assert state is not None and state.group(1).startswith(("stopping", "stopped")), stopped.out
    done = await client.wait(job.job_id, poll=0.05)
    assert done.termination_reason == "stopped"
    again = await localcompute("jobs", "show", job.job_id, *where, cwd=tmp_path)
    assert "state        stopped (exit 143)  (70 Job stopped)" in again.out, again.out


async def test_a_removed_job_says_so_and_its_results_and_logs_fail_with_the_reason(
    served: Served, client: Client, key_file: Path, tmp_path: Path
) -> None:
    where = ["--server", served.base_url, "--key-file", str(key_file)]
    job = await finished(client)
    await client.delete(job.job_id)
    shown = await localcompute("jobs", "show", job.job_id, *where, cwd=tmp_path)
    assert shown.code == 0, shown.err
    assert "state        completed, removed  (70 Job completed)" in shown.out
    assert "removed      yes: its results and logs are gone (deleted, or expired)" in shown.out
    gone = f"job {job.job_id} was removed (deleted, or its results expired): "
    on_host = ["--data-dir", str(served.root / "var")]
    commands = [[c, job.job_id, *w] for c in ("results", "logs") for w in (where, on_host)]
    answers = await asyncio.gather(
        *(localcompute("jobs", *command, cwd=tmp_path) for command in commands)
    )
    for command, refused in zip(commands, answers, strict=True):
        assert (refused.code, refused.out) == (exits.EXIT_FAILED, ""), command
        assert refused.err == f"localcompute jobs: {gone}its results and logs are gone\n"
    assert not (tmp_path / "results").exists()


async def test_a_job_that_never_ran_has_no_log_and_says_why(
    served: Served, client: Client, key_file: Path, tmp_path: Path
) -> None:
    served.extra["runtime"].missing_images.add("no/such-image:latest")
    job = await client.start([LOCAL_DID], rawcode="true", **{**SHELL, "image": "no/such-image"})
    await client.wait(job.job_id, poll=0.05)
    for where in (
        ["--server", served.base_url, "--key-file", str(key_file)],
        ["--data-dir", str(served.root / "var")],
    ):
        logs = await localcompute("jobs", "logs", job.job_id, *where, cwd=tmp_path)
        assert logs.code == exits.EXIT_FAILED, where
        assert logs.err.startswith(f"localcompute jobs: job {job.job_id} has no log: its algor")
        assert logs.err.count("\n") == 1 and "no/such-image" in logs.err


async def test_a_closed_stdout_ends_every_command_quietly(
    served: Served, client: Client, key_file: Path, tmp_path: Path
) -> None:
    job = await finished(client, "for i in $(seq 5000); do echo line $i; done")
    where = ["--server", served.base_url, "--key-file", str(key_file)]
    (tmp_path / "algo.sh").write_text("echo hi")
    run = ["run", "algo.sh", "--image", "localcompute/busybox", "--input", LOCAL_DID]
    commands = (
        ["jobs", "list", *where],  # closed at the last flush
        ["jobs", "logs", job.job_id, *where],  # closed while it prints
        [*run, *where],  # closed at its first line, the job started
    )
    ended = await asyncio.gather(
        *(localcompute(*command, cwd=tmp_path, closed_stdout=True) for command in commands)
    )
    for command, done in zip(commands, ended, strict=True):
        assert (done.code, done.err) == (exits.EXIT_OUTPUT_CLOSED, ""), command
    for started in await client.jobs():  # the run's job goes on without its command
        await client.wait(started.job_id, poll=0.05)
