"""The laptop loop and the operator's view, as a person types them: `localcompute run`
with no server and no configuration, and `localcompute jobs` on a server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BUSYBOX_IMAGE, docker_ps
from tests.served import LOCAL_DID, Consumer, Served, running_server

pytestmark = pytest.mark.docker

IMAGE = ["--image", BUSYBOX_IMAGE.split(":")[0]]
TALKS = """
echo "dids=$DIDS"
for i in 1 2 3; do echo "step $i"; sleep 1; done
cat /data/inputs/*/0 > /data/outputs/copy.txt
cat /data/inputs/algoCustomData.json; echo
touch /data/inputs/x 2>/dev/null && echo writable || echo read-only
exit 3
"""


def localcompute(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localcompute", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "XDG_CACHE_HOME": str(cwd / "cache"),
            "XDG_CONFIG_HOME": str(cwd / "config"),
        },
    )


def word_after(line: str, word: str) -> str:
    """In "[   0.3s] job 6d90… in local": the word after `word`."""
    words = line.split()
    return words[words.index(word) + 1]


@pytest.fixture
def work(tmp_path: Path, busybox_image: str) -> Iterator[Path]:
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    (tmp_path / "algo.sh").write_text(TALKS)
    (tmp_path / "params.json").write_text('{"threshold": 0.5}')
    yield tmp_path
    assert not list((tmp_path / "cache" / "localcompute").glob("run-*")), "a run left its folder"


def test_run_gives_live_output_results_and_the_algorithm_s_exit_code(work: Path) -> None:
    done = localcompute(
        "run",
        "algo.sh",
        *IMAGE,
        "--input",
        "data.csv",
        "--custom-data",
        "params.json",
        "--cpu",
        "0.5",
        "--ram-gb",
        "0.5",
        cwd=work,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    did = word_after(lines[0], "input")
    assert did.startswith("did:op:") and lines[0].endswith(str(work / "data.csv"))
    assert f'  | dids=["{did.removeprefix("did:op:")}"]' in lines
    assert "  | step 3" in lines and '  | {"threshold": 0.5}' in lines and "  | read-only" in lines
    # Phases come in order, the algorithm's lines between "running" and the end.
    running = next(i for i, line in enumerate(lines) if line.endswith("algorithm running"))
    assert running < lines.index("  | step 1") < lines.index("  | step 3")
    end = next(i for i, line in enumerate(lines) if "] finished: " in line)
    assert lines[end].endswith("finished: the algorithm exited with code 3")
    assert end > lines.index("  | step 3")
    [job_dir] = (work / "results").iterdir()
    assert (job_dir / "copy.txt").read_text() == "a,b\n1,2\n"
    assert "step 2" in (job_dir / "algorithm.log").read_text()
    assert docker_ps(f"label=localcompute.job_id={job_dir.name}") == []
    # The same file gives the same DID, run after run.
    again = localcompute("run", "algo.sh", *IMAGE, "--input", "data.csv", "--json", cwd=work)
    status = json.loads(again.stdout)
    assert status["inputDID"] == [did] and status["exitCode"] == 3


def test_run_says_why_a_job_could_not_start_with_its_own_exit_code(work: Path) -> None:
    missing = localcompute(
        "run", "algo.sh", "--image", "no/such-image", "--input", "data.csv", cwd=work
    )
    assert missing.returncode == 66
    assert "no/such-image:latest is not available" in missing.stdout
    dead = localcompute("run", "algo.sh", *IMAGE, "--input", "http://127.0.0.1:9/x.csv", cwd=work)
    assert dead.returncode == 65
    assert "input 0 (did:op:" in dead.stdout and "download failed" in dead.stdout
    nofile = localcompute("run", "algo.sh", *IMAGE, "--input", "nope.csv", cwd=work)
    assert nofile.returncode == 2 and "--input nope.csv: no such file" in nofile.stderr
    (work / "algo.xyz").write_text("?")
    unknown = localcompute("run", "algo.xyz", "--input", "data.csv", cwd=work)
    assert unknown.returncode == 2 and "--image and --entrypoint" in unknown.stderr


def test_ctrl_c_stops_the_job_and_still_collects_its_logs(work: Path) -> None:
    (work / "slow.sh").write_text("echo started; sleep 60")
    with subprocess.Popen(
        [sys.executable, "-m", "localcompute", "run", "slow.sh", *IMAGE, "--input", "data.csv"],
        cwd=work,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "XDG_CACHE_HOME": str(work / "cache")},
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            if line.strip() == "| started":
                break
        process.send_signal(signal.SIGINT)
        out = process.stdout.read()
        assert process.wait(60) == 130, out
    assert "stopping the job" in out
    [job_dir] = (work / "results").iterdir()
    assert (job_dir / "algorithm.log").read_text() == "started\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, busybox_image: str) -> Iterator[Served]:
    with running_server(tmp_path_factory.mktemp("cli")) as server:
        yield server


def test_jobs_on_a_server_and_on_its_data_folder(served: Served, tmp_path: Path) -> None:
    # Not a folder named localcompute in the working directory: `python -m` would import it.
    key = tmp_path / "config" / "localcompute" / "consumer.key"
    key.parent.mkdir(parents=True)
    key.write_text("0x" + "11" * 32)  # the tests' consumer, who owns the jobs below
    data_dir = served.root / "var"
    run = localcompute(
        "run",
        str(Path(__file__).with_name("cli_algo.sh")),
        *IMAGE,
        "--server",
        served.base_url,
        "--input",
        LOCAL_DID,
        "--key-file",
        str(key),
        "--out",
        str(tmp_path / "r"),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    job_id = word_after(run.stdout.splitlines()[0], "job")

    mine = localcompute("jobs", "list", "--server", served.base_url, "--json", cwd=tmp_path)
    assert job_id in [j["jobId"] for j in json.loads(mine.stdout)]
    table = localcompute("jobs", "list", "--data-dir", str(data_dir), cwd=tmp_path)
    assert table.returncode == 0 and job_id in table.stdout and "OWNER" in table.stdout
    shown = localcompute("jobs", "show", job_id, "--data-dir", str(data_dir), cwd=tmp_path)
    assert "completed" in shown.stdout and "algorithm.log" in shown.stdout
    for where in (["--server", served.base_url], ["--data-dir", str(data_dir)]):
        logs = localcompute("jobs", "logs", job_id, *where, cwd=tmp_path)
        assert logs.stdout == "hello from the cli\n", logs.stderr
        out = tmp_path / "fetched" / where[0]
        got = localcompute("jobs", "results", job_id, *where, "--out", str(out), cwd=tmp_path)
        assert got.returncode == 0 and (out / "algorithm.log").is_file()

    # A running job, stopped by the operator through the server on that data folder.
    import asyncio

    import aiohttp

    async def start_sleeper() -> str:
        async with aiohttp.ClientSession() as session:
            raw = {
                "meta": {
                    "rawcode": "sleep 60",
                    "container": {"image": IMAGE[1], "tag": "latest", "entrypoint": "sh $ALGO"},
                }
            }
            status, body = await Consumer(session, served.base_url).start(raw)
            assert status == 200, body
            return str(body[0]["jobId"])

    sleeper = asyncio.run(start_sleeper())
    deadline = time.monotonic() + 60
    while (
        "Running"
        not in localcompute(
            "jobs", "show", sleeper, "--data-dir", str(data_dir), cwd=tmp_path
        ).stdout
    ):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    running = localcompute(
        "jobs", "list", "--status", "running", "--data-dir", str(data_dir), cwd=tmp_path
    )
    assert sleeper in running.stdout and job_id not in running.stdout
    stopped = localcompute("jobs", "stop", sleeper, "--data-dir", str(data_dir), cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    deleted = localcompute("jobs", "delete", job_id, "--server", served.base_url, cwd=tmp_path)
    assert deleted.returncode == 0, deleted.stderr
    gone = localcompute("jobs", "list", "--data-dir", str(data_dir), cwd=tmp_path)
    assert job_id not in gone.stdout
    nothing = localcompute("jobs", "stop", sleeper, "--data-dir", str(tmp_path), cwd=tmp_path)
    assert nothing.returncode == 69 and "no server is running" in nothing.stderr
