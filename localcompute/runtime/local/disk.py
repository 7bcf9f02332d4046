"""A hard limit on what one job writes on the host: the folder its containers write to.

Three mechanisms, the strongest the host offers chosen at start-up:

- xfs: an XFS project quota on the job's folder, when data_dir lies on XFS mounted
  with prjquota (needs root and xfs_quota). The kernel refuses writes past it.
- loop: the job's folder is an ext4 file system in a sparse image file of exactly the
  quota, mounted on a loop device (needs root: mount, mkfs.ext4). The kernel refuses
  writes past it; the image holds only what is written and not yet deleted.
- watch: a plain folder whose size is measured every half second while the job runs; a job
  past its quota is stopped. Soft: a fast writer can overshoot by a second's writes.

The DiskQuota interface and the watcher are in runtime/quota.py. Every function here
blocks (it runs commands or walks folders); the engine calls them off the event loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from localcompute.core.errors import ConfigError
from localcompute.runtime.folders import remove_tree
from localcompute.runtime.quota import DiskQuota, Mechanism, WatchQuota

log = logging.getLogger(__name__)

IMAGE_NAME = "disk.img"
# A hard quota counts as reached when less than this is left of it.
FULL_MARGIN = 1024 * 1024
COMMAND_TIMEOUT = 60


def _run(*argv: str) -> None:
    try:
        subprocess.run(argv, check=True, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    except subprocess.CalledProcessError as e:
        why = (e.stderr or e.stdout or "").strip().splitlines()
        raise OSError(f"{argv[0]} failed: {why[-1] if why else f'exit {e.returncode}'}") from e
    except (OSError, subprocess.TimeoutExpired) as e:
        raise OSError(f"{argv[0]} failed: {e}") from e


def _hard_full(folder: Path, limit: int) -> bool:
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < min(FULL_MARGIN, max(limit // 100, 4096))


@dataclass(frozen=True)
class LoopQuota:
    """An ext4 image of the quota's size beside the folder, loop-mounted on it."""

    mechanism: Mechanism = "loop"
    hard: bool = True
    # A file system of its own: nothing renames out of it (the filter copies).
    keeps_renamed: bool = False

    @staticmethod
    def image(folder: Path) -> Path:
        return folder.parent / IMAGE_NAME

    def attach(self, folder: Path, limit: int, key: str) -> None:
        self.detach(folder, key)
        image = self.image(folder)
        image.parent.mkdir(parents=True, exist_ok=True)
        with image.open("wb") as f:
            f.truncate(limit)  # sparse: it holds only what the job writes
        image.chmod(0o600)
        try:
            # No journal and no reserved blocks: scratch space of exactly the quota.
            _run("mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", str(image))
            folder.mkdir(parents=True)
            self._mount(image, folder)
        except OSError:
            self.detach(folder, key)
            raise
        with contextlib.suppress(OSError):
            (folder / "lost+found").rmdir()

    @staticmethod
    def _mount(image: Path, folder: Path) -> None:
        # discard: what the job deletes or cuts short leaves the image file too, so
        # outputs moved out of it are never held twice on the host.
        _run("mount", "-o", "loop,nosuid,nodev,discard", str(image), str(folder))

    def reattach(self, folder: Path, key: str) -> None:
        image = self.image(folder)
        if image.exists() and not os.path.ismount(folder):
            folder.mkdir(parents=True, exist_ok=True)
            self._mount(image, folder)

    def detach(self, folder: Path, key: str) -> None:
        if os.path.ismount(folder):
            try:
                _run("umount", str(folder))
            except OSError:
                # Busy (a container not yet gone): detach now, freed when the last user goes.
                _run("umount", "-l", str(folder))
        remove_tree(folder)
        self.image(folder).unlink(missing_ok=True)

    def full(self, folder: Path, limit: int) -> bool:
        return _hard_full(folder, limit)


@dataclass(frozen=True)
class XfsQuota:
    """An XFS project quota: the folder gets a project id of its own and a hard block limit."""

    mountpoint: Path
    mechanism: Mechanism = "xfs"
    hard: bool = True
    # XFS lets a file be renamed out of a project's tree (into a folder that does not
    # inherit one) and it keeps the project id: the job's results would go on counting
    # against a project whose number a later job may draw.
    keeps_renamed: bool = True

    @staticmethod
    def project(key: str) -> int:
        # Stable per job and far from ids an administrator hands out by hand.
        return 1_000_000 + int(uuid.uuid5(uuid.NAMESPACE_OID, key).hex[:7], 16)

    def _quota(self, command: str) -> None:
        _run("xfs_quota", "-x", "-c", command, str(self.mountpoint))

    def attach(self, folder: Path, limit: int, key: str) -> None:
        self.detach(folder, key)
        folder.mkdir(parents=True)
        project = self.project(key)
        try:
            self._quota(f"project -s -p '{folder}' {project}")
            self._quota(f"limit -p bhard={limit} {project}")
        except OSError:
            self.detach(folder, key)
            raise

    def reattach(self, folder: Path, key: str) -> None:
        return None  # the project and its limit live in the file system

    def detach(self, folder: Path, key: str) -> None:
        remove_tree(folder)
        with contextlib.suppress(OSError):
            self._quota(f"limit -p bhard=0 {self.project(key)}")

    def full(self, folder: Path, limit: int) -> bool:
        # With the project's inherit flag set, statfs on the folder reports the quota.
        return _hard_full(folder, limit)


def mount_of(path: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> tuple[Path, str, str]:
    """(mount point, file system type, super options) of the mount that holds `path`."""
    best: tuple[Path, str, str] = (Path("/"), "", "")
    resolved = path.resolve()
    with mountinfo.open(encoding="utf-8") as f:
        for line in f:
            head, _, tail = line.partition(" - ")
            point = Path(head.split()[4].replace("\\040", " "))
            fields = tail.split()
            if resolved.is_relative_to(point) and len(point.parts) >= len(best[0].parts):
                best = (point, fields[0], fields[2] if len(fields) > 2 else "")
    return best


def _xfs(data_dir: Path) -> XfsQuota | str:
    point, fstype, options = mount_of(data_dir)
    if fstype != "xfs":
        return f"{data_dir} is on {fstype or 'an unknown file system'}, not XFS"
    if not {"prjquota", "pquota"} & set(options.split(",")):
        return f"{point} is XFS mounted without prjquota"
    if shutil.which("xfs_quota") is None:
        return "xfs_quota is not installed (xfsprogs)"
    quota = XfsQuota(point)
    probe = data_dir / f".quota-probe-{uuid.uuid4().hex[:8]}"
    try:
        quota.attach(probe, 1024 * 1024, probe.name)
    except OSError as e:
        return f"an XFS project quota could not be set: {e}"
    finally:
        quota.detach(probe, probe.name)
    return quota


def _loop(data_dir: Path) -> LoopQuota | str:
    if os.geteuid() != 0:
        return "loop mounts need root"
    missing = [c for c in ("mkfs.ext4", "mount", "umount") if shutil.which(c) is None]
    if missing:
        return f"{', '.join(missing)} not installed"
    quota = LoopQuota()
    probe = data_dir / f".quota-probe-{uuid.uuid4().hex[:8]}" / "data"
    try:
        quota.attach(probe, 4 * 1024 * 1024, "probe")
    except OSError as e:
        return f"a loop-mounted image could not be made: {e}"
    finally:
        with contextlib.suppress(OSError):
            quota.detach(probe, "probe")
            probe.parent.rmdir()
    return quota


def choose(data_dir: Path, wanted: str) -> tuple[DiskQuota, str]:
    """The mechanism `wanted` (auto: the strongest that works here), and why weaker
    ones were passed over. ConfigError when a named one cannot work on this host."""
    data_dir.mkdir(parents=True, exist_ok=True)
    passed_over: list[str] = []
    for name, probe in (("xfs", _xfs), ("loop", _loop)):
        if wanted not in ("auto", name):
            continue
        found = probe(data_dir)
        if not isinstance(found, str):
            return found, "; ".join(passed_over)
        if wanted == name:
            raise ConfigError(f"[pool] disk_quota = {name!r} cannot work here: {found}")
        passed_over.append(f"{name}: {found}")
    return WatchQuota(), "; ".join(passed_over)


def mounted_folders(jobs_dir: Path) -> list[Path]:
    """Job data folders with a loop image or a mount: what a crash may have left."""
    if not jobs_dir.is_dir():
        return []
    return [
        p / "data"
        for p in jobs_dir.iterdir()
        if (p / IMAGE_NAME).exists() or os.path.ismount(p / "data")
    ]


def release_all(jobs_dir: Path) -> None:
    """Unmount and remove every job image under `jobs_dir` (a throw-away data folder)."""
    for folder in mounted_folders(jobs_dir):
        with contextlib.suppress(OSError):
            LoopQuota().detach(folder, folder.parent.name)
