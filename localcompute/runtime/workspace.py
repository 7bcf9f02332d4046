"""The folder of one job on the host, and what each container sees of it.

    <data_dir>/jobs/<job_id>/
        spec/fetch.json       what the fetch container downloads (read-only to it)
        data/                 everything the job's containers write: under its disk quota
                              (a mounted image, an XFS project, or a watched folder)
        data/inputs/…         /data/inputs       read-only to the algorithm
        data/transformations  /data/transformations  read-only to the algorithm
        data/ddos             /data/ddos         read-only to the algorithm
        data/outputs          /data/outputs      writable by the algorithm, then emptied by the
                              filter as it moves them into results/
        data/logs             /data/logs         writable; algorithm.log
        disk.img              the quota's file system, when it is a loop-mounted image
        adminlogs/            configure.log, algorithm.log (published), filter.log,
                              publish.log: never mounted in a job container
        results/              the filtered outputs, moved out of data/ by the filter
        meta/                 the filter's manifest

Every function here blocks on the file system; the engine calls them off the loop.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from localcompute.runtime.folders import remove_tree

# Folders a job container writes to must accept the container's uid, which is not
# the server's when the server runs as root.
_SHARED_MODE = 0o777


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def of(cls, data_dir: Path, job_id: str) -> Workspace:
        return cls(data_dir / "jobs" / job_id)

    @property
    def spec(self) -> Path:
        return self.root / "spec"

    @property
    def fetch_spec(self) -> Path:
        return self.spec / "fetch.json"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def inputs(self) -> Path:
        return self.data / "inputs"

    @property
    def transformations(self) -> Path:
        return self.data / "transformations"

    @property
    def ddos(self) -> Path:
        return self.data / "ddos"

    @property
    def outputs(self) -> Path:
        return self.data / "outputs"

    @property
    def logs(self) -> Path:
        return self.data / "logs"

    @property
    def algorithm_log(self) -> Path:
        """The algorithm's own algorithm.log, in its reach (and its disk quota)."""
        return self.logs / "algorithm.log"

    @property
    def published_algorithm_log(self) -> Path:
        """algorithm.log as published: what the algorithm wrote to its own, then its
        output; out of its reach, and kept when the job's data goes."""
        return self.adminlogs / "algorithm.log"

    @property
    def adminlogs(self) -> Path:
        return self.root / "adminlogs"

    @property
    def live_algorithm_log(self) -> Path:
        """Where the algorithm's output streams while it runs: out of its reach (the
        algorithm can replace anything in its own logs folder), moved into
        algorithm.log when it has exited."""
        return self.adminlogs / "algorithm.live.log"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def meta(self) -> Path:
        return self.root / "meta"

    @property
    def filter_manifest(self) -> Path:
        return self.meta / "filter.json"

    def admin_log(self, name: str) -> Path:
        return self.adminlogs / name

    def prepare(self, fetch_spec: str, make_data: Callable[[Path], None]) -> None:
        """Lay out a clean folder for a fetch; what an earlier attempt left is removed.

        `make_data` creates the empty data folder under the job's disk quota."""
        for path in (self.results, self.meta, self.spec, self.adminlogs):
            remove_tree(path)
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o711)
        make_data(self.data)
        for path in (self.spec, self.adminlogs):
            path.mkdir(mode=0o700)
        for path in (
            self.data,
            self.inputs,
            self.transformations,
            self.ddos,
            self.outputs,
            self.logs,
            self.results,
            self.meta,
        ):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(_SHARED_MODE)
        self.spec.chmod(0o755)
        self.fetch_spec.write_text(fetch_spec, encoding="utf-8")
        self.fetch_spec.chmod(0o644)
        self.algorithm_log.touch()
        self.algorithm_log.chmod(0o666)

    def reset_results(self) -> None:
        """Empty results and meta before a filter runs again."""
        for path in (self.results, self.meta):
            remove_tree(path)
            path.mkdir(parents=True)
            path.chmod(_SHARED_MODE)

    def holds_results(self) -> bool:
        """Whether a filter has begun: it moves the outputs, so it cannot begin again."""
        return self.results.is_dir() and any(self.results.iterdir())

    def filter_finished(self) -> bool:
        """Whether a filter ran to its end: it writes its manifest last, whole or not at all."""
        return self.filter_manifest.is_file()

    def scrub(self) -> None:
        """After publishing: the fetch instructions go (the data folder goes with its
        quota); results and logs stay."""
        remove_tree(self.spec)

    def remove(self) -> None:
        remove_tree(self.root)


def file_digest(path: Path) -> tuple[int, str]:
    """Size and sha256 of a regular file, read without following a link."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(f"{path} is not a regular file")
        digest = hashlib.file_digest(f, "sha256")
        return f.tell(), digest.hexdigest()


def text_or_empty(path: Path) -> str:
    """A job's log as text ("" when it is not there yet): what receipts and outcomes read."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
