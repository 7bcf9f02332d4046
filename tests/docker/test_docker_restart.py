"""The Docker engine dies under running jobs and comes back: every job resumes or ends
saying why, the server answers throughout, and health says Docker is gone meanwhile.

Runs on a dockerd of the test's own (tests/docker/dockerd.py), killed with SIGKILL,
once as Docker runs by default (it kills running containers when it starts again)
and once with live-restore (they run on).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest

from localcompute import JobStatus, TerminationReason
from tests.conftest import FileServer, docker_ps
from tests.docker.conftest import (
    EngineFactory,
    raw_job,
    result_text,
    url_input,
    wait_final,
    wait_status,
)
from tests.docker.dockerd import PrivateDockerd, images_for_jobs

pytestmark = [
    pytest.mark.docker,
    # docker-py's UnixHTTPConnection.connect does not close its socket when the engine
    # refuses the connection (docker/transport/unixconn.py); the socket is closed when
    # it is collected, which warns. Only calls made while the engine is down do it.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

SMALL = {"cpu": 0.5, "ram_gb": 0.25, "disk_gb": 0.05, "max_job_duration": 120}
ENVS = [
    {"id": "fetching", "max_jobs": 1, **SMALL},
    {"id": "running", "max_jobs": 1, "algorithm_network": True, **SMALL},
]


@pytest.fixture(params=[False, True], ids=["default", "live-restore"])
def private_dockerd(
    request: pytest.FixtureRequest, busybox_image: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PrivateDockerd]:
    dockerd = PrivateDockerd(live_restore=request.param)
    try:
        dockerd.start()
        dockerd.copy_images(*images_for_jobs())
        # The engine and the docker CLI of the fixtures both read DOCKER_HOST.
        monkeypatch.setenv("DOCKER_HOST", dockerd.host)
        yield dockerd
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            print(f"--- the private dockerd's log:\n{dockerd.log_tail()}")
        dockerd.stop()


async def _until(check: object, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_jobs_in_each_phase_outlive_a_docker_restart(
    private_dockerd: PrivateDockerd, engine_factory: EngineFactory, file_server: FileServer
) -> None:
    token = f"run-{uuid.uuid4().hex}"
    file_server.add(token, "counted")
    file_server.delays["slow.csv"] = 15
    engine = await engine_factory(environments=ENVS)
    running = await engine.submit(
        raw_job(
            f"wget -q -O /dev/null {file_server.url(token)}; sleep 3; "
            "echo done > $OUTPUTS/done.txt",
            environment="running",
        )
    )
    waiting = await engine.submit(raw_job("echo next > $OUTPUTS/next.txt", environment="running"))
    fetching = await engine.submit(
        raw_job(
            "cat /data/inputs/*/0 > $OUTPUTS/out.txt",
            environment="fetching",
            inputs=[url_input("did:op:" + "c" * 64, file_server.add("slow.csv", "slow\n"))],
        )
    )
    await wait_status(engine, running, JobStatus.RUNNING_ALGORITHM)
    await _until(lambda: file_server.requests.count(token) == 1, "the algorithm never ran")
    await _until(lambda: "slow.csv" in file_server.requests, "the fetch never started")

    private_dockerd.kill()
    # The server answers at once and says what is wrong.
    health = await asyncio.wait_for(engine.health(), 5)
    assert not health["docker"].ok and "does not answer" in (health["docker"].error or "")
    assert (await engine.get(running)).status == JobStatus.RUNNING_ALGORITHM
    await asyncio.sleep(2)
    file_server.delays.clear()
    private_dockerd.start()

    fetched = await wait_final(engine, fetching, timeout=60)
    assert fetched.termination_reason == TerminationReason.COMPLETED, fetched.status_text
    assert result_text(engine, fetched, "out.txt") == "slow\n"
    ran = await wait_final(engine, running, timeout=60)
    # Never twice, whatever Docker lost.
    assert file_server.requests.count(token) == 1, "the algorithm ran again"
    if "it may have run, so it is not started again" in ran.status_text:
        # Docker was killed while it started the algorithm, and came back saying it was
        # only created: not started again (a rare timing, but a real one).
        assert ran.termination_reason == TerminationReason.ERROR, ran.status_text
    elif private_dockerd.live_restore:
        assert ran.termination_reason == TerminationReason.COMPLETED, ran.status_text
        assert result_text(engine, ran, "done.txt") == "done\n"
    else:
        assert ran.termination_reason == TerminationReason.ERROR, (ran.status_text, ran.exit_code)
        assert "Docker engine restarted while the algorithm ran" in ran.status_text
        assert ran.exit_code in (137, 143)  # Docker's SIGKILL or SIGTERM
    assert file_server.requests.count(token) == 1, "the algorithm ran again"
    after = await wait_final(engine, waiting, timeout=60)
    assert after.termination_reason == TerminationReason.COMPLETED, after.status_text
    assert (await engine.health())["docker"].ok
    assert docker_ps(f"label=localcompute.instance={engine.instance}") == []
