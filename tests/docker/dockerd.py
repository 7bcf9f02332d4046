"""A Docker engine of the test's own, to kill and start again under running jobs.

It has its own sockets and folders under /tmp (a unix socket path must stay short),
no bridge and no iptables like the CI engine, and the images a job needs, copied
from the main engine. Only this engine is ever killed: the main one is left alone.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from localcompute.core.settings import DockerSettings
from tests.conftest import BUSYBOX_IMAGE


class PrivateDockerd:
    def __init__(self, *, live_restore: bool) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="lc-dockerd-", dir="/tmp"))
        self.host = f"unix://{self.root}/docker.sock"
        self.live_restore = live_restore
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            "dockerd",
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            f"--data-root={self.root}/data",
            f"--exec-root={self.root}/exec",
            f"--pidfile={self.root}/docker.pid",
            f"--host={self.host}",
        ]
        if self.live_restore:
            argv.append("--live-restore")
        log = (self.root / "dockerd.log").open("ab")
        self.process = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 30
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the private dockerd did not start:\n{self.log_tail()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a crash would: no clean-up of its own."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def answers(self) -> bool:
        return self.docker("version", check=False).returncode == 0

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "--host", self.host, *args], capture_output=True, text=True, check=check
        )

    def copy_images(self, *refs: str) -> None:
        """Images of the main engine, loaded into this one (no registry to pull from)."""
        for ref in refs:
            with subprocess.Popen(["docker", "save", ref], stdout=subprocess.PIPE) as saved:
                subprocess.run(
                    ["docker", "--host", self.host, "load", "-q"],
                    stdin=saved.stdout,
                    check=True,
                    capture_output=True,
                )
            assert saved.returncode == 0, f"docker save {ref} failed"

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "dockerd.log").read_text(errors="replace")[-3000:]
        return ""

    def stop(self) -> None:
        """Remove every container, stop the engine cleanly (it unmounts what it
        mounted), and remove its folders."""
        if self.process is not None:
            ids = self.docker("ps", "-aq", check=False).stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, check=False)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # Shims of containers a kill left running belong to this engine only.
        subprocess.run(["pkill", "-KILL", "-f", f"containerd-shim.*{self.root}/exec"], check=False)
        for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
            point = line.split()[1]
            if point.startswith(str(self.root)):
                subprocess.run(["umount", "-l", point], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def images_for_jobs() -> tuple[str, ...]:
    return (BUSYBOX_IMAGE, DockerSettings().helper_image)
