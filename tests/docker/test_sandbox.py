"""The wall around a stranger's algorithm, under both runtimes: runc (the host's kernel)
and runsc (gVisor's, `runtime = "runsc"`). Each hostile case is refused or contained the
same way under both; under runsc the kernel the algorithm sees is gVisor's.

`scripts/run test` registers runsc with the Docker engine (`scripts/run setup --sandbox`);
without it these tests fail and say so, unless LOCALCOMPUTE_NO_SANDBOX=1 says this
engine has none on purpose (the runsc cases are then skipped, the runc ones still run).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

import docker
import pytest

from localcompute import JobStatus, TerminationReason
from localcompute.core.errors import EnvironmentUnavailableError
from localcompute.runtime.hardening import REFUSED
from localcompute.runtime.logfile import TRUNCATION_MARKER
from tests.docker.conftest import EngineFactory, raw_job, result_text, wait_final, wait_status

pytestmark = pytest.mark.docker

HELPER_IMAGE = "localcompute/helper:latest"  # has python3; local, never pulled
PROBE = (Path(__file__).parent / "hostile" / "probe.py").read_text()
RUNTIMES = ["runc", "runsc"]
LOG_CAP = 1_000_000


def sandbox_registered() -> bool:
    runtimes = docker.from_env().info().get("Runtimes", {})
    return "runsc" in runtimes


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "runsc" and not sandbox_registered():
        if os.environ.get("LOCALCOMPUTE_NO_SANDBOX") == "1":
            pytest.skip("LOCALCOMPUTE_NO_SANDBOX=1: this engine has no runsc")
        pytest.fail(
            "the Docker engine has no runsc runtime: `scripts/run setup --sandbox` registers "
            "it (or set LOCALCOMPUTE_NO_SANDBOX=1 to skip the gVisor cases)",
            pytrace=False,
        )
    return name


def environment(runtime: str, **extra: Any) -> list[dict[str, Any]]:
    env = {"id": "test", "cpu": 0.5, "max_job_duration": 60, **extra}
    if runtime == "runsc":
        env["runtime"] = "runsc"
    return [env]


async def test_the_kernel_surface_is_refused_and_inputs_and_root_are_read_only(
    engine_factory: EngineFactory, runtime: str
) -> None:
    engine = await engine_factory(environments=environment(runtime))
    job = await wait_final(
        engine,
        await engine.submit(raw_job(PROBE, image=HELPER_IMAGE, entrypoint="python3 $ALGO")),
    )
    assert (job.status, job.exit_code) == (JobStatus.JOB_COMPLETED, 0), job.detail
    seen = json.loads(result_text(engine, job, "probe.json"))
    # Every syscall of the hardened profile's list fails with EPERM, under both.
    assert seen["syscalls"] == dict.fromkeys(REFUSED, "EPERM")
    assert seen["dmesg"]["code"] != 0 and "Operation not permitted" in seen["dmesg"]["head"]
    assert seen["raw_socket"] == "EPERM"
    assert seen["connect_out"] != "ok" and seen["interfaces"] == ["lo"]
    assert seen["write_inputs"] == "EROFS"
    # gVisor answers a write to the read-only root with EACCES, runc with EROFS.
    assert seen["write_root"] in ("EROFS", "EACCES") and seen["write_tmp"] == "ok"
    assert (seen["home"], seen["uid"]) == ("/tmp", 1000)
    # A link out of the outputs is not followed into the results.
    assert "host-hostname" not in [r.filename for r in job.results]
    host = platform.release()
    if runtime == "runsc":
        assert seen["kernel"] != host and seen["kernel"] == "4.4.0", seen["kernel"]
        assert host not in seen["version"]
        assert seen["kallsyms"].startswith("error"), "gVisor has no /proc/kallsyms"
    else:
        assert seen["kernel"] == host
        # The host's symbols, with every address hidden from an unprivileged reader.
        assert seen["kallsyms"].startswith("0000000000000000 "), seen["kallsyms"]


CONTAINED: dict[str, tuple[str, dict[str, Any]]] = {
    # Doubles a shell variable until the memory limit kills it.
    "memory hog": ("x=aaaaaaaa; while true; do x=$x$x; done", {"ram_gb": 0.05}),
    # A child shell forks sleepers until the PIDs limit stops it (busybox's sh exits 2 when
    # it cannot fork); the algorithm counts the processes without forking, and ends them.
    "fork bomb": (
        'sh -c "while :; do sleep 20 & done" 2>/dev/null; set -- /proc/[0-9]*; '
        "echo $# > $OUTPUTS/forked; kill -9 -1 2>/dev/null; exit 0",
        {},
    ),
    # Fills /tmp, which is memory: it stops at the job's memory, never the host's.
    "tmp filler": (
        "dd if=/dev/zero of=/tmp/fill bs=1M count=400 2>$OUTPUTS/dd.txt; "
        "echo $? >> $OUTPUTS/dd.txt",
        {"ram_gb": 0.1},
    ),
    "time limit": ("sleep 30", {"max_job_duration": 2}),
    # Writes its outputs past its disk quota (100 MiB).
    "disk filler": (
        "dd if=/dev/zero of=$OUTPUTS/big bs=1M count=400 2>/dev/null; echo wrote $?",
        {"disk_gb": 0.1},
    ),
    # 30 MB of output, faster than any reader: the log is capped ([docker] log_max_bytes).
    "log flood": ("head -c 30000000 /dev/zero | tr '\\0' x | fold -w 99", {}),
}


@pytest.mark.parametrize("case", list(CONTAINED))
async def test_a_misbehaving_algorithm_is_contained(
    engine_factory: EngineFactory, runtime: str, case: str
) -> None:
    script, limits = CONTAINED[case]
    engine = await engine_factory(
        environments=environment(runtime, **limits), log_max_bytes=LOG_CAP
    )
    job = await wait_final(engine, await engine.submit(raw_job(script)), timeout=120)
    assert job.status == JobStatus.JOB_COMPLETED, job.detail
    if case == "memory hog":
        assert job.termination_reason is TerminationReason.OOM, (job.exit_code, job.detail)
        assert job.exit_code == 137
    elif case == "fork bomb" and runtime == "runc":
        forked = int(result_text(engine, job, "forked"))
        assert 100 < forked <= 512, forked  # [docker] pids_limit, the algorithm's own included
    elif case == "fork bomb":
        # Each sandboxed process costs gVisor host tasks: its limit is 8 x pids_limit of
        # them; the sandbox either counts what it got or ends at the limit (exit 2).
        if job.exit_code == 0:
            assert 100 < int(result_text(engine, job, "forked")) < 8 * 512
        else:
            assert job.termination_reason is TerminationReason.FAILED, job.detail
    elif case == "tmp filler":
        if job.termination_reason is not TerminationReason.OOM:
            out = result_text(engine, job, "dd.txt")
            assert "No space left on device" in out and out.strip().endswith("1"), out
    elif case == "disk filler":
        assert job.termination_reason is TerminationReason.DISK, (job.exit_code, job.detail)
    elif case == "log flood":
        log = result_text(engine, job, "algorithm.log").encode()
        assert job.exit_code == 0 and log.endswith(TRUNCATION_MARKER % LOG_CAP)
        assert len(log) == LOG_CAP + len(TRUNCATION_MARKER % LOG_CAP)
    else:
        assert job.termination_reason is TerminationReason.TIMEOUT


async def usual_work(
    engine_factory: EngineFactory, runtime: str, code: str, image: str, entrypoint: str
) -> Any:
    """What a job of `code` wrote to work.json; it must have exited 0."""
    engine = await engine_factory(environments=environment(runtime))
    job = await wait_final(
        engine, await engine.submit(raw_job(code, image=image, entrypoint=entrypoint))
    )
    log = result_text(engine, job, "algorithm.log")
    assert (job.status, job.exit_code) == (JobStatus.JOB_COMPLETED, 0), log
    return json.loads(result_text(engine, job, "work.json"))


async def test_usual_work_runs_under_the_hardened_profile(
    engine_factory: EngineFactory, runtime: str
) -> None:
    """What the profile allows: python with threads, processes and a pipe; a shell pipeline."""
    work = (
        "import concurrent.futures, multiprocessing, os, subprocess, hashlib, json, tempfile\n"
        "with concurrent.futures.ThreadPoolExecutor(4) as pool:\n"
        "    sums = list(pool.map(lambda n: sum(range(n)), [10**5] * 8))\n"
        "with multiprocessing.Pool(2) as procs:\n"
        "    squares = procs.map(abs, [-1, -2, -3])\n"
        "shell = subprocess.run(['sh', '-c', 'seq 1 1000 | sort -rn | head -1'],\n"
        "                       capture_output=True, text=True, check=True).stdout.strip()\n"
        "with tempfile.TemporaryDirectory() as d:\n"
        "    open(os.path.join(d, 'f'), 'w').write('x' * 10**6)\n"
        "    digest = hashlib.sha256(open(os.path.join(d, 'f'), 'rb').read()).hexdigest()[:8]\n"
        "out = {'sums': len(sums), 'squares': squares, 'shell': shell, 'digest': digest}\n"
        "json.dump(out, open(os.environ['OUTPUTS'] + '/work.json', 'w'))\n"
    )
    work_done = await usual_work(engine_factory, runtime, work, HELPER_IMAGE, "python3 $ALGO")
    assert work_done == {
        "sums": 8,
        "squares": [1, 2, 3],
        "shell": "1000",
        "digest": "1b977e9f",
    }


NODE_IMAGE = "localcompute-test/node-real:latest"
NODE_WORK = """
const { Worker } = require('worker_threads');
const { execSync } = require('child_process');
const fs = require('fs');
const crypto = require('crypto');
const code = 'require("worker_threads").parentPort.postMessage(21 * 2)';
new Worker(code, { eval: true }).on('message', (fromWorker) => {
  fs.writeFileSync('/tmp/n', 'x'.repeat(100000));
  const digest = crypto.createHash('sha256').update(fs.readFileSync('/tmp/n')).digest('hex');
  const shell = execSync('echo piped | tr a-z A-Z').toString().trim();
  const out = { fromWorker, shell, digest: digest.slice(0, 8) };
  fs.writeFileSync(process.env.OUTPUTS + '/work.json', JSON.stringify(out));
});
"""


@pytest.fixture(scope="session")
def node_image(busybox_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """This host's node, with the libraries it links and a busybox shell, as an image: no
    registry is reachable here, and the clients layer needs node on the host anyway."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed on PATH to make the node image", pytrace=False)
    if subprocess.run(["docker", "image", "inspect", NODE_IMAGE], capture_output=True).returncode:
        root = tmp_path_factory.mktemp("node-root")
        binary = Path(node).resolve()
        linked = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True)
        files = [binary, *(Path(w) for w in linked.stdout.split() if w.startswith("/"))]
        for file in files:
            target = root / ("bin/node" if file == binary else str(file).lstrip("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(file, target)
        shutil.copy(shutil.which("busybox") or "/bin/busybox", root / "bin" / "busybox")
        for applet in ("sh", "tr", "echo"):
            (root / "bin" / applet).symlink_to("busybox")
        (root / "tmp").mkdir()
        (root / "tmp").chmod(0o1777)  # as every image has it: Docker's /tmp keeps its mode
        tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True, check=True)
        subprocess.run(
            ["docker", "import", "-", NODE_IMAGE], input=tar.stdout, check=True, capture_output=True
        )
    return NODE_IMAGE


async def test_node_starts_threads_and_processes_under_the_hardened_profile(
    engine_factory: EngineFactory, runtime: str, node_image: str
) -> None:
    work_done = await usual_work(engine_factory, runtime, NODE_WORK, node_image, "node $ALGO")
    assert work_done == {
        "fromWorker": 42,
        "shell": "PIPED",
        "digest": hashlib.sha256(b"x" * 100000).hexdigest()[:8],
    }


async def test_an_environment_whose_runtime_docker_lacks_is_unavailable_and_the_rest_run(
    engine_factory: EngineFactory,
) -> None:
    engine = await engine_factory(
        environments=[
            {"id": "test", "max_job_duration": 60},
            {"id": "walled", "max_job_duration": 60, "runtime": "no-such-runtime"},
        ]
    )
    why = engine.unavailable["walled"]
    assert why.startswith("the no-such-runtime runtime cannot be had on this host: ")
    assert "no-such-runtime" in why.partition(": ")[2], "Docker's own words"
    with pytest.raises(EnvironmentUnavailableError, match="no-such-runtime"):
        await engine.submit(raw_job("true", environment="walled"))
    job = await wait_final(engine, await engine.submit(raw_job("echo fine")))
    assert (job.status, job.exit_code) == (JobStatus.JOB_COMPLETED, 0)


async def test_live_logs_and_a_stop_behave_the_same(
    engine_factory: EngineFactory, runtime: str
) -> None:
    engine = await engine_factory(environments=environment(runtime))
    job_id = await engine.submit(raw_job("echo begun; sleep 1; echo still; sleep 60; echo never"))
    await wait_status(engine, job_id, JobStatus.RUNNING_ALGORITHM)
    live = engine.live_log(job_id)
    assert live is not None
    lines = live.follow()
    assert await anext(lines) == b"begun\n"  # while it runs, not at its end
    streamed = b"begun\n"
    async for chunk in lines:
        streamed += chunk
        if b"still" in streamed:
            break
    assert (await engine.get(job_id)).status == JobStatus.RUNNING_ALGORITHM
    await engine.stop(job_id)
    job = await wait_final(engine, job_id, timeout=30)
    assert job.termination_reason is TerminationReason.STOPPED
    assert "never" not in result_text(engine, job, "algorithm.log")
