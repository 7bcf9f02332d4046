"""The laptop loop and the operator's view, as a person types them: `localcompute run`
with no server and no configuration, and `localcompute jobs` on a server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcompute.runtime.local.docker import DockerRuntime
from tests.conftest import BUSYBOX_IMAGE, docker_ps, mounts_under
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


def user_env(cwd: Path) -> dict[str, str]:
    return {
        **os.environ,
        "XDG_CACHE_HOME": str(cwd / "cache"),
        "XDG_CONFIG_HOME": str(cwd / "config"),
    }


def localcompute(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localcompute", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=user_env(cwd),
    )


@contextlib.contextmanager
def running(cwd: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """`localcompute run …` as a child to send signals to; killed if a test leaves it."""
    with subprocess.Popen(
        [sys.executable, "-m", "localcompute", "run", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=user_env(cwd),
    ) as process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def read_until(process: subprocess.Popen[str], text: str) -> str:
    """Its stdout up to and including the first line that contains `text`."""
    assert process.stdout is not None
    seen = ""
    for line in process.stdout:
        seen += line
        if text in line:
            return seen
    raise AssertionError(f"the run ended before printing {text!r}:\n{seen}")


def left_by_runs(cwd: Path) -> list[str]:
    """What the runs under `cwd` left: containers mounting their engine folders, the job
    disks mounted there, the folders themselves."""
    cache = (cwd / "cache").resolve()
    left = []
    labelled = docker_ps("label=localcompute.instance")
    if labelled:
        # Another test's container may go between the two calls: inspect answers the rest.
        inspect = ["docker", "inspect", "-f", "{{.Name}}{{range .Mounts}} {{.Source}}{{end}}"]
        out = subprocess.run([*inspect, *labelled], capture_output=True, text=True).stdout
        for name, *sources in (line.split() for line in out.splitlines() if line):
            if any(Path(s).is_relative_to(cache) for s in sources):
                left.append(f"container {name}")
    left += [f"mount {m}" for m in mounts_under(cache)]
    left += [f"folder {p}" for p in (cache / "localcompute").glob("run-*")]
    return left


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
    # Its results as the files they became: the command's own server, and its URLs, are gone.
    assert "resultsUrls" not in status and "algorithmLogUrl" not in status
    paths = [Path(r["path"]) for r in status["results"]]
    assert [p.name for p in paths] == [r["filename"] for r in status["results"]]
    assert all(p.is_file() and p.parent.parent == work / "results" for p in paths)
    assert (work / "results" / status["jobId"] / "copy.txt") in paths


def test_a_local_run_loads_no_http_client_or_server(work: Path) -> None:
    """A local run asks its engine in its own process: what it imports, as Python's own
    import log says, has nothing of aiohttp, the client's HTTP side or the web server
    (only --ui serves it, for the page: test_run_ui_… below)."""
    env = {**user_env(work), "PYTHONPROFILEIMPORTTIME": "1"}

    def imported(*extra: str) -> set[str]:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "localcompute",
                "run",
                "algo.sh",
                *IMAGE,
                "--input",
                "data.csv",
                "--json",
                *extra,
            ],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert json.loads(done.stdout)["exitCode"] == 3, done.stderr[-3000:]
        lines = [line.split("|")[-1].strip() for line in done.stderr.splitlines()]
        return {line for line in lines if line and "import time:" not in line}

    modules = imported()
    assert "localcompute.engine.pipeline" in modules, "the import log was read"
    http = {"aiohttp", "aiohttp.web", "localcompute.client.provider", "localcompute.web.serving"}
    assert http.isdisjoint(modules), sorted(http & modules)


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
    with running(work, "slow.sh", *IMAGE, "--input", "data.csv") as process:
        read_until(process, "| started")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 130, out + err
    assert "stopping the job; its logs are still collected (Ctrl-C again to leave now)" in out
    assert "Traceback" not in err
    [job_dir] = (work / "results").iterdir()
    assert (job_dir / "algorithm.log").read_text() == "started\n"
    assert left_by_runs(work) == []


# Each way a run can be ended early: (what it has printed, the signals with the pauses
# between them, its exit code).
LEAVING = {
    "a second Ctrl-C": ("| started", [signal.SIGINT, 0.1, signal.SIGINT], 130),
    "SIGTERM": ("| started", [signal.SIGTERM], 143),
    "Ctrl-C while Python starts": ("", [0.3, signal.SIGINT], 130),
    "Ctrl-C while its engine starts": ("] input ", [signal.SIGINT], 130),
    "Ctrl-C as the job starts": ("] job ", [signal.SIGINT, 0.05, signal.SIGINT], 130),
}


@pytest.mark.parametrize(("printed", "signals", "code"), LEAVING.values(), ids=LEAVING.keys())
def test_a_run_ended_early_leaves_nothing_behind_and_no_traceback(
    work: Path, printed: str, signals: list[signal.Signals | float], code: int
) -> None:
    (work / "slow.sh").write_text("echo started; sleep 60")
    with running(work, "slow.sh", *IMAGE, "--input", "data.csv") as process:
        if printed:
            read_until(process, printed)
        for step in signals:
            if isinstance(step, float):
                time.sleep(step)
            else:
                process.send_signal(step)
        out, err = process.communicate(timeout=60)
        assert process.returncode == code, out + err
    assert "Traceback" not in err and "Error" not in err and len(err.splitlines()) <= 1, err
    assert left_by_runs(work) == [], out + err
    # Nor a moment later: nothing the run had set going comes up after it exited.
    time.sleep(1)
    assert left_by_runs(work) == [], out + err


async def _can_have(ref: str) -> bool:
    runtime = DockerRuntime()
    await runtime.open()
    try:
        return await runtime.image_exists(ref) or await runtime.pullable(ref) is None
    finally:
        await runtime.close()


# The algorithm files `run` knows, the default image of each, and the image setup makes
# where that one cannot be pulled (None: none).
DEFAULTS = {
    ".py": ("import sys; print('python', sys.version_info[0])", "python:3.12-slim", True),
    ".sh": ("echo shell", "busybox:latest", True),
    ".js": ("console.log('node')", "node:20-slim", False),
}


@pytest.mark.parametrize(("suffix", "case"), DEFAULTS.items(), ids=DEFAULTS.keys())
def test_without_an_image_a_run_uses_what_this_host_can_run(
    work: Path, suffix: str, case: tuple[str, str, bool]
) -> None:
    code, default, has_stand_in = case
    (work / f"algo{suffix}").write_text(code)
    done = localcompute("run", f"algo{suffix}", "--input", "data.csv", cwd=work)
    job_line = next((line for line in done.stdout.splitlines() if "] job " in line), "")
    if asyncio.run(_can_have(default)):
        assert done.returncode == 0, done.stdout + done.stderr
        assert job_line.endswith(f"({default})") and done.stderr == ""
    elif has_stand_in:
        assert done.returncode == 0, done.stdout + done.stderr
        [note] = done.stderr.splitlines()
        stand_in = job_line.rsplit("(", 1)[1].rstrip(")")
        assert stand_in.startswith("localcompute/"), job_line
        assert note.startswith(f"localcompute run: cannot pull {default}: using {stand_in} (")
    else:
        assert done.returncode == 66 and job_line == "", done.stdout + done.stderr
        [why] = done.stderr.splitlines()
        assert why.startswith(f"localcompute run: {default} is not on this host")
        assert "docker load" in why and "--image" in why


def test_a_limit_this_machine_cannot_give_is_refused_in_the_command_s_terms(
    work: Path,
) -> None:
    cores = len(os.sched_getaffinity(0))
    assert cores == os.cpu_count(), "the checks below read this machine's own cores"
    refusals = {
        ("--cpu", str(cores + 1)): f"--cpu {cores + 1}: this machine has {cores} cores",
        ("--ram-gb", "100000"): "--ram-gb 100000: this machine has ",
        ("--ram-gb", "0"): "--ram-gb 0: give a number above 0",
        ("--max-time", "-1"): "--max-time -1: give seconds, or 0 for no limit",
    }
    if not list(Path("/dev").glob("nvidia[0-9]*")):
        refusals[("--gpus", "1")] = "--gpus 1: this machine has no GPUs"
    for option, says in refusals.items():
        done = localcompute("run", "algo.sh", *IMAGE, *option, "--input", "data.csv", cwd=work)
        assert done.returncode == 2, done.stdout + done.stderr
        [line] = done.stderr.splitlines()
        assert line.startswith(f"localcompute run: {says}"), line
        assert "[pool]" not in line and done.stdout == ""
    assert "0: no limit" in " ".join(localcompute("run", "--help", cwd=work).stdout.split())


def test_without_docker_a_run_says_so_in_one_line(work: Path) -> None:
    for image in (IMAGE, []):
        done = subprocess.run(
            [sys.executable, "-m", "localcompute", "run", "algo.sh", *image, "--input", "data.csv"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=60,
            env={**user_env(work), "DOCKER_HOST": f"unix://{work}/no-docker.sock"},
        )
        assert done.returncode == 69, done.stdout + done.stderr
        [line] = done.stderr.splitlines()
        assert line.startswith("localcompute run: the Docker engine does not answer")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, busybox_image: str) -> Iterator[Served]:
    with running_server(tmp_path_factory.mktemp("cli")) as server:
        yield server


def consumer_key(cwd: Path) -> Path:
    """The tests' consumer, who owns the jobs, as the user's key under `cwd`."""
    # Not a folder named localcompute in the working directory: `python -m` would import it.
    key = cwd / "config" / "localcompute" / "consumer.key"
    key.parent.mkdir(parents=True)
    key.write_text("0x" + "11" * 32)
    return key


def test_jobs_on_a_server_and_on_its_data_folder(served: Served, tmp_path: Path) -> None:
    key = consumer_key(tmp_path)
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


def test_a_run_on_a_server_that_is_left_stops_its_job_there(served: Served, tmp_path: Path) -> None:
    key = consumer_key(tmp_path)
    (tmp_path / "slow.sh").write_text("echo started; sleep 60")
    where = ["--server", served.base_url]
    with running(
        tmp_path, "slow.sh", *IMAGE, *where, "--input", LOCAL_DID, "--key-file", str(key)
    ) as process:
        job_id = word_after(read_until(process, "] job "), "job")
        read_until(process, "| started")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 143, out + err
    assert "SIGTERM: leaving now; the provider stops the job" in out
    assert "Traceback" not in err
    # The job does not run on unseen: the provider has stopped it, or soon does.
    deadline = time.monotonic() + 60
    while True:
        shown = localcompute("jobs", "show", job_id, *where, "--json", cwd=tmp_path)
        status = json.loads(shown.stdout)
        if status["status"] == 70:
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.3)
    assert status["terminationReason"] == "stopped"


def test_run_ui_prints_the_job_s_page_and_keeps_it_up_until_ctrl_c(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import urllib.request

    monkeypatch.setenv("LOCALCOMPUTE_NO_BROWSER", "1")  # no screen here: the URL is printed
    with running(work, "algo.sh", *IMAGE, "--input", "data.csv", "--ui") as process:
        said = read_until(process, "] page: ")
        page = said.splitlines()[-1].split("page: ", 1)[1].strip()
        base, _, fragment = page.partition("/ui/#/jobs/")
        job_id = said.splitlines()[-2].split("job ", 1)[1].split()[0]
        assert fragment == job_id and base.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(base + "/ui/") as r:
            assert r.status == 200 and b"<html" in r.read().lower()
        # After the job, the page and its data stay, until Ctrl-C.
        said = read_until(process, "Ctrl-C to leave")
        assert "finished: the algorithm exited with code 3" in said
        assert f"stays up at {page}" in said
        with urllib.request.urlopen(f"{base}/ui/api/jobs/{job_id}") as r:
            shown = json.loads(r.read())
        assert (shown["status"], shown["exitCode"]) == (70, 3)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 3, "it ends as the job did, not as an interrupt"
    assert left_by_runs(work) == []
