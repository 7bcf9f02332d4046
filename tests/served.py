"""localcompute servers for the tests, with datasets and algorithms configured for them.

`running_server`: started as the README starts it, in a process of its own, on the
real Docker engine (the docker and clients layers). `fake_server`: the same app on
a real port in the test's own process, over the FakeRuntime (the integration layer).
"""

from __future__ import annotations

import http.server
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from localcompute.web.auth import sign
from tests.conftest import BUSYBOX_IMAGE, STARTED_INSTANCES, docker_ps

CONSUMER_KEY = bytes.fromhex("11" * 32)
CONSUMER = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A"
OTHER_KEY = bytes.fromhex("33" * 32)
PROVIDER_KEY = "0x" + "22" * 32
# Its address, as GET / publishes it: the signer of every receipt the served server writes.
PROVIDER_ADDRESS = "0x1563915e194D8CfBA1943570603F7606A3115508"
LOCAL_DID = "did:op:" + "1a" * 32  # a local file, raw algorithms allowed
URL_DID = "did:op:" + "2b" * 32  # a URL, only the published algorithm
ALGO_DID = "did:op:" + "3c" * 32
UNTRUSTED_DID = "did:op:" + "4d" * 32
ENV = "test"
# How often the test clients ask for a job's status while they wait: a local server
# answers in a millisecond, and a fake runtime's job ends in a few tenths of a second,
# so a longer pause would be most of the wait.
POLL = 0.02


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Files(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"dataset behind a URL\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Served:
    base_url: str
    root: Path
    process: subprocess.Popen[bytes] | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def instance(self) -> str:
        with sqlite3.connect(self.root / "var" / "localcompute.sqlite") as db:
            return str(db.execute("SELECT value FROM meta WHERE key='instance_id'").fetchone()[0])


# The tests poll every POLL seconds, several jobs at once, from this host: no test but
# those of the buckets (which pass `limits`) may meet a 429. The swarm lab's clients call
# from the host's own address, not loopback: buckets too wide to be met.
_NO_BUCKETS = "exempt_loopback = true"
_WIDE_BUCKETS = "\n".join(
    f"{key} = 1000000"
    for key in (
        "starts_per_second",
        "start_burst",
        "reads_per_second",
        "read_burst",
        "unsigned_per_second",
        "unsigned_burst",
    )
)


def write_config(root: Path, port: int, files_url: str, **overrides: Any) -> Path:
    """The tests' configuration; `limits`: the [limits] keys (default: no 429 at all)."""
    host = overrides.get("host", "127.0.0.1")
    datasets = root / "datasets"
    datasets.mkdir(parents=True, exist_ok=True)
    (datasets / "local.csv").write_text("local dataset\n")
    (datasets / "ddo.json").write_text(json.dumps({"id": LOCAL_DID, "name": "local"}))
    config = f"""
[server]
host = "{overrides.get("host", "127.0.0.1")}"
port = {port}
data_dir = "{root / "var"}"
max_body_bytes = {overrides.get("max_body_bytes", 65536)}
{overrides.get("server_extra", "")}

[docker]
pull_policy = "never"
fetch_network = "host"
stop_grace = 1

{overrides.get("environments_first", "")}
[[environments]]
id = "{ENV}"
max_jobs = 2
max_job_duration = 60

[provider]
private_key = "{PROVIDER_KEY}"
chain_ids = [8996, 137]
dataset_roots = ["{datasets}"]
{overrides.get("provider_extra", "")}

[[datasets]]
did = "{LOCAL_DID}"
files = ["{datasets / "local.csv"}"]
ddo = "{datasets / "ddo.json"}"

[[datasets]]
did = "{URL_DID}"
files = ["{files_url}"]
allow_raw_algorithm = false
trusted_algorithms = ["{ALGO_DID}"]

[[algorithms]]
did = "{ALGO_DID}"
rawcode = "cat /data/inputs/*/0 > $OUTPUTS/copy.txt"
container = {{ image = "{BUSYBOX_IMAGE.split(":")[0]}", tag = "latest", entrypoint = "sh $ALGO" }}

[[algorithms]]
did = "{UNTRUSTED_DID}"
rawcode = "echo not trusted by the URL dataset"
container = {{ image = "{BUSYBOX_IMAGE.split(":")[0]}", tag = "latest", entrypoint = "sh $ALGO" }}
{overrides.get("extra", "")}

[limits]
{overrides.get("limits", _NO_BUCKETS if host in ("127.0.0.1", "::1") else _WIDE_BUCKETS)}
"""
    path = root / "config.toml"
    path.write_text(config)
    return path


REPO = Path(__file__).resolve().parents[1]
# The README's command; it does the set-up first (already done by `scripts/run test`).
README_SERVE = (str(REPO / "scripts" / "run"), "serve")


def start_server(
    root: Path,
    command: tuple[str, ...] = (sys.executable, "-m", "localcompute", "serve"),
    **overrides: Any,
) -> Served:
    """`command --config <a config for the tests>`, on a free port, until it answers `GET /`.
    `host` (an override): where the server and its file server listen, 127.0.0.1 unless a
    test's containers run elsewhere (the swarm lab's node)."""
    host = overrides.get("host", "127.0.0.1")
    files = http.server.ThreadingHTTPServer((host, 0), _Files)
    serve_in_a_thread(files)
    port = overrides.pop("port", None) or free_port()
    config = write_config(root, port, f"http://{host}:{files.server_port}/data.csv", **overrides)
    with (root / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [*command, "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=root,
        )
    base = f"http://{host}:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(base + "/", timeout=2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(
                    "the server did not start:\n" + (root / "server.log").read_text()
                ) from None
            time.sleep(0.1)
    served = Served(base, root, process, {"files": files})
    STARTED_INSTANCES.add(served.instance)
    return served


def stop_server(served: Served) -> int:
    assert served.process is not None
    served.process.send_signal(signal.SIGINT)
    try:
        code = served.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        served.process.kill()
        code = served.process.wait()
    files = served.extra.get("files")
    if files is not None:
        files.shutdown()
        files.server_close()
    return code


@contextmanager
def running_server(root: Path, **overrides: Any) -> Iterator[Served]:
    """A server for a test module; at the end it must stop cleanly and leave no container.

    A server that stops leaves running jobs to be re-attached later; every test
    waits for its jobs, so nothing may be left.
    """
    server = start_server(root, **overrides)
    try:
        yield server
    finally:
        instance = server.instance
        code = stop_server(server)
        left = docker_ps(f"label=localcompute.instance={instance}")
        subprocess.run(["docker", "rm", "-f", *left], capture_output=True)
    assert code == 0, (root / "server.log").read_text()
    assert left == [], f"containers left behind: {left}"


class Consumer:
    """Talks to the provider API as Ocean's clients do."""

    def __init__(self, session: aiohttp.ClientSession, base: str, key: bytes = CONSUMER_KEY):
        from localcompute.web.auth import ProviderKey

        self.session = session
        self.base = base
        self.key = key
        self.address = ProviderKey(key).address

    async def next_nonce(self) -> int:
        async with self.session.get(
            f"{self.base}/api/services/nonce", params={"userAddress": self.address}
        ) as r:
            assert r.status == 200
            return int(Decimal((await r.json())["nonce"])) + 1

    def sign(self, message: str, *, js: bool = False) -> str:
        signature = sign(message, self.key)
        if js:  # ethers gives v = 27/28
            signature = signature[:-2] + format(int(signature[-2:], 16) + 27, "02x")
        return signature

    async def start(
        self,
        algorithm: dict[str, Any],
        *,
        did: str = LOCAL_DID,
        nonce: int | str | None = None,
        js: bool = False,
        **extra: Any,
    ) -> tuple[int, Any]:
        n = await self.next_nonce() if nonce is None else nonce
        body = {
            "dataset": {"documentId": did, "serviceId": "svc", "transferTxId": "0xorder"},
            "algorithm": algorithm,
            "environment": ENV,
            "consumerAddress": self.address,
            "nonce": str(n) if js else n,
            "signature": self.sign(f"{self.address}{did}{n}", js=js),
            **extra,
        }
        async with self.session.post(f"{self.base}/api/services/compute", json=body) as r:
            return r.status, await r.json()

    async def status(self, job_id: str | None = None, **params: str) -> list[dict[str, Any]]:
        query = {"consumerAddress": self.address, **params}
        if job_id:
            query["jobId"] = job_id
        async with self.session.get(f"{self.base}/api/services/compute", params=query) as r:
            assert r.status == 200, await r.text()
            result: list[dict[str, Any]] = await r.json()
            return result

    async def wait_final(self, job_id: str, timeout: float = 60) -> dict[str, Any]:
        import asyncio

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            [job] = await self.status(job_id)
            if job["status"] in (31, 32, 70):
                return job
            await asyncio.sleep(POLL)
        raise AssertionError(f"job {job_id} did not finish")

    def stop_query(self, job_id: str, nonce: int, did: str = "") -> dict[str, str]:
        return {
            "consumerAddress": self.address,
            "jobId": job_id,
            "documentId": did,
            "nonce": str(nonce),
            "signature": self.sign(f"{self.address}{job_id}{did}{nonce}"),
        }

    def result_query(self, job_id: str, index: int, nonce: int) -> dict[str, str]:
        return {
            "signature": self.sign(f"{self.address}{job_id}{index}{nonce}"),
            "nonce": str(nonce),
            "jobId": job_id,
            "index": str(index),
            "consumerAddress": self.address,
        }


def serve_in_a_thread(server: http.server.ThreadingHTTPServer) -> None:
    """Serve until `server.shutdown()`, which waits for the loop's next look at it: every
    10 ms, not the default 0.5 s that each test's teardown would wait out."""
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()


@asynccontextmanager
async def fake_server(root: Path, **overrides: Any) -> AsyncIterator[Served]:
    """The app of `localcompute serve`, on a free port in this process, over a FakeRuntime.

    `served.extra["runtime"]` is the FakeRuntime (set `down` to play a Docker engine
    that has gone away); `served.extra["files"]` the test's file server.
    """
    from aiohttp import web

    from localcompute.core.config_file import load_settings
    from localcompute.engine import Engine
    from localcompute.testing import FakeRuntime
    from localcompute.web.app import create_app

    files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    serve_in_a_thread(files)
    port = free_port()
    config = write_config(root, port, f"http://127.0.0.1:{files.server_port}/data.csv", **overrides)
    settings = load_settings(config)
    runtime = FakeRuntime()
    runner = web.AppRunner(create_app(settings, engine=Engine(settings, runtime=runtime)))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield Served(f"http://127.0.0.1:{port}", root, None, {"files": files, "runtime": runtime})
        # Every test waits for its jobs: nothing may still run when the module ends.
        running = [c.spec.name for c in runtime.containers.values() if c.state == "running"]
        assert running == [], f"containers still running at the end: {running}"
    finally:
        await runner.cleanup()
        files.shutdown()
        files.server_close()
