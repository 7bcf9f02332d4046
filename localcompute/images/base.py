"""The Python base image made with debootstrap from the host's Debian mirror.

For hosts that cannot pull python:3.12-slim: debootstrap a minimal Debian with
python3 into a temporary rootfs, pack it with tar and import it into Docker. This
module owns that run, its logs and its clean-up (including unmounting whatever an
interrupted debootstrap left mounted); finding the mirror is mirror.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import tempfile
import time
from pathlib import Path

from localcompute.core.errors import ConfigError
from localcompute.images.mirror import apt_mirror
from localcompute.runtime import ContainerRuntime

# The package's name, as before it was split into modules: log lines keep their source.
log = logging.getLogger("localcompute.images")

BOOTSTRAP_TAG = "localcompute/python-base:stable"
BASE_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
]
# Lines of a failed command's output shown in the error.
LOG_TAIL_LINES = 40


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _mounts_below(root: Path) -> list[str]:
    """Mount points inside `root`, deepest first (from /proc/self/mountinfo)."""
    prefix = str(root).rstrip("/") + "/"
    found: list[str] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split()
            if len(fields) > 4:
                # Spaces and the like are written as octal escapes such as \040.
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4])
                if point.startswith(prefix):
                    found.append(point)
    return sorted(found, key=len, reverse=True)


async def _remove_tree(root: Path) -> None:
    """Remove a rootfs, unmounting first whatever an interrupted debootstrap left mounted.

    shutil.rmtree crosses mount points: with the host's /dev or /proc still bound
    into the rootfs it would delete from the host, so it runs only once none is left.
    """
    for point in _mounts_below(root):
        proc = await asyncio.create_subprocess_exec(
            "umount", "-l", point, stdout=asyncio.subprocess.DEVNULL
        )
        await proc.wait()
    left = _mounts_below(root)
    if left:
        log.error("not removing %s: %s still mounted there", root, ", ".join(left))
        return
    await asyncio.to_thread(shutil.rmtree, root, ignore_errors=True)


async def _run_logged(argv: list[str], log_path: Path, what: str) -> None:
    """Run `argv` with its output in `log_path`; raise ConfigError with the log's tail if it fails.

    The command runs in its own process group, killed as a whole if we are cancelled,
    so that no dpkg keeps writing into a rootfs being removed.
    """
    with log_path.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = await proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise
    if code != 0:
        raise ConfigError(f"{what} failed (exit code {code}):\n{_tail(log_path)}")


def _tidy_rootfs(rootfs: Path) -> None:
    """Drop what only the build needed: downloaded packages and package lists."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_Packages*"):
        for path in rootfs.glob(pattern):
            path.unlink(missing_ok=True)


async def bootstrap_base(
    runtime: ContainerRuntime,
    tag: str = BOOTSTRAP_TAG,
    *,
    suite: str = "stable",
    mirror: str | None = None,
) -> None:
    """Make a Debian image with python3 from the host's Debian mirror: no registry involved."""
    debootstrap = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")
    if debootstrap is None:
        raise ConfigError(
            "bootstrap-base needs debootstrap: run `apt-get install debootstrap` (as root)"
        )
    if os.geteuid() != 0:
        raise ConfigError("bootstrap-base must run as root: debootstrap makes root-owned files")
    if mirror is None:
        mirror = apt_mirror()
        if mirror is None:
            raise ConfigError(
                "found no Debian mirror in /etc/apt/sources.list.d/*.sources or "
                "/etc/apt/sources.list: name one with --mirror URL"
            )
    work = Path(tempfile.mkdtemp(prefix="localcompute-base-"))
    rootfs = work / "rootfs"
    logfile = work / "debootstrap.log"
    tarball = work / "rootfs.tar"
    try:
        rootfs.mkdir()
        log.info("debootstrap %s from %s (takes a few minutes)", suite, mirror)
        started = time.monotonic()
        try:
            await _run_logged(
                [
                    debootstrap,
                    "--variant=minbase",
                    "--include=python3,ca-certificates",
                    suite,
                    str(rootfs),
                    mirror,
                ],
                logfile,
                f"debootstrap of {suite} from {mirror}",
            )
        except ConfigError as e:
            # debootstrap's own log holds the reason; it goes away with the rootfs.
            detail = _tail(rootfs / "debootstrap" / "debootstrap.log", 20)
            raise ConfigError(
                e.message + (f"\ndebootstrap.log:\n{detail}" if detail else "")
            ) from e
        log.info("debootstrap done in %.0f s; importing it as %s", time.monotonic() - started, tag)
        await asyncio.to_thread(_tidy_rootfs, rootfs)
        # The tar binary keeps owners, modes, links and device files exactly.
        await _run_logged(
            [
                "tar",
                "-C",
                str(rootfs),
                "--numeric-owner",
                "--xattrs",
                "--exclude=./dev/*",
                "--exclude=./proc/*",
                "--exclude=./sys/*",
                "-cf",
                str(tarball),
                ".",
            ],
            logfile,
            "packing the rootfs with tar",
        )
        await _remove_tree(rootfs)  # early: it is as big as the tarball
        await runtime.import_image(tarball, tag, changes=BASE_CHANGES)
        log.info("imported %s", tag)
    finally:
        await _remove_tree(work)
