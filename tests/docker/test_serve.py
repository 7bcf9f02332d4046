"""`localcompute serve` as a service starts and stops: one line for each start-up
failure, signals handled, nothing secret in its log."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from localcompute.cli import exits
from tests.served import Consumer, Served, free_port, running_server, write_config

pytestmark = pytest.mark.docker

RAW = {
    "meta": {
        "rawcode": "echo ok",
        "container": {"image": "localcompute/busybox", "tag": "latest", "entrypoint": "sh $ALGO"},
    }
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, busybox_image: str) -> Iterator[Served]:
    with running_server(tmp_path_factory.mktemp("serve")) as server:
        yield server


def serve(config: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localcompute", "serve", "--config", str(config), *options],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_second_server_on_the_same_data_dir_refuses_and_names_the_first(
    served: Served,
) -> None:
    second = serve(served.root / "config.toml")
    assert second.returncode != 0
    pid = served.process.pid if served.process else 0
    last = second.stderr.strip().splitlines()[-1]
    assert f"is in use by process {pid}" in last, second.stderr
    assert "Traceback" not in second.stderr


def test_a_port_in_use_is_one_line_and_a_failed_exit(tmp_path: Path, busybox_image: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, port, "http://127.0.0.1:9/x")
        done = serve(config)
    assert done.returncode == exits.EXIT_USAGE == 2  # as a data folder in use, a bad option
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        f"localcompute serve: cannot listen on 127.0.0.1:{port}: the port is in use "
        "(set [server] host and port, or serve --host and --port)"
    )
    assert "Traceback" not in done.stderr and "listening on" not in done.stdout


def test_host_and_port_options_win_over_the_file_s(tmp_path: Path, busybox_image: str) -> None:
    with socket.socket() as taken:  # the file's port is in use: only --port can work
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = write_config(tmp_path, taken.getsockname()[1], "http://127.0.0.1:9/x")
        port = free_port()
        options = ["--host", "127.0.0.2", "--port", str(port)]
        with subprocess.Popen(
            [sys.executable, "-m", "localcompute", "serve", "--config", str(config), *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        ) as process:
            assert process.stdout is not None
            line = process.stdout.readline()
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0
    assert line == f"localcompute listening on http://127.0.0.2:{port}\n"
    wrong = serve(config, "--port", "70000")
    assert wrong.returncode == 2 and "'70000' is not a TCP port (0 to 65535)" in wrong.stderr


def test_an_environment_whose_one_job_exceeds_the_host_is_one_line_and_a_failed_exit(
    tmp_path: Path, busybox_image: str
) -> None:
    cores = len(os.sched_getaffinity(0))
    envs = f'[[environments]]\nid = "fits"\ncpu = {cores}\n\n'
    envs += f'[[environments]]\nid = "huge"\ncpu = {cores + 1}\n\n'
    config = write_config(tmp_path, free_port(), "http://127.0.0.1:9/x", environments_first=envs)
    done = serve(config)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert "environment 'huge' cannot run one job: cpu:" in last
    assert f"needs {cores + 1} whole cores" in last and "[pool]" in last
    assert "Traceback" not in done.stderr and "listening on" not in done.stdout


def test_sighup_is_logged_and_the_log_keeps_no_secret(served: Served) -> None:
    assert served.process is not None
    served.process.send_signal(signal.SIGHUP)

    async def signed_calls() -> str:
        async with aiohttp.ClientSession() as session:
            consumer = Consumer(session, served.base_url)
            status, body = await consumer.start(RAW)
            assert status == 200, body
            job_id = str(body[0]["jobId"])
            await consumer.wait_final(job_id)
            nonce = await consumer.next_nonce()
            query = consumer.result_query(job_id, 0, nonce)
            async with session.get(served.base_url + "/api/services/computeResult", params=query):
                pass
            return query["signature"]

    signature = asyncio.run(signed_calls())
    time.sleep(0.5)
    assert served.process.poll() is None, "SIGHUP must not stop the server"
    log = (served.root / "server.log").read_text()
    assert "SIGHUP: the configuration is not reloaded" in log
    assert "computeResult?" in log and "signature=[redacted]" in log and "nonce=[redacted]" in log
    assert signature.removeprefix("0x")[:40] not in log
    assert "localcompute 0.1.0 at http://127.0.0.1:" in log and "environment  test:" in log


def test_sigterm_stops_cleanly_and_fast(tmp_path: Path, busybox_image: str) -> None:
    config = write_config(tmp_path, free_port(), "http://127.0.0.1:9/x")
    with subprocess.Popen(
        [sys.executable, "-m", "localcompute", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as process:
        assert process.stdout is not None
        assert "localcompute listening on" in process.stdout.readline()
        assert (tmp_path / "var" / "server.url").is_file()
        start = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert time.monotonic() - start < 10
    assert not (tmp_path / "var" / "server.url").exists()
