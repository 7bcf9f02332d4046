"""The images localcompute makes for itself, none of which needs a container registry.

* The helper image runs the fetch and filter steps. It is built from
  images/helper/Dockerfile plus the standard-library programs in
  localcompute/helper, and labelled with a digest of those files so that a
  server notices (and rebuilds) an image that no longer matches its code.
* A Python base image made with debootstrap from the host's Debian mirror, for
  hosts that cannot pull python:3.12-slim.
* A busybox image holding only the host's static busybox: small, fast to make,
  and enough to try algorithms and to run the Docker tests.

Nothing here imports docker: every engine call goes through DockerRuntime.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import hashlib
import io
import logging
import os
import re
import shutil
import signal
import struct
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from localcompute.docker_runtime import DockerRuntime
from localcompute.errors import ConfigError, ContainerError, ImageNotFoundError
from localcompute.settings import DockerSettings

log = logging.getLogger(__name__)

LABEL_DIGEST = "localcompute.helper_digest"
LABEL_BASE = "localcompute.base"
DEFAULT_HELPER_TAG = "localcompute/helper:latest"
DEFAULT_BASE = "python:3.12-slim"
BOOTSTRAP_TAG = "localcompute/python-base:stable"
BUSYBOX_TAG = "localcompute/busybox:latest"

PACKAGE_DIR = Path(__file__).resolve().parent
HELPER_DIR = PACKAGE_DIR / "helper"
# Only a source checkout (or an editable install) has the Dockerfile next to the package.
DOCKERFILE = PACKAGE_DIR.parent / "images" / "helper" / "Dockerfile"
# The programs the engine runs; a build without them would give an image that fails every job.
HELPER_PROGRAMS = ("fetch.py", "filter.py")

BASE_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
]
BUSYBOX_CHANGES = ["ENV PATH=/bin", 'CMD ["sh"]']
# Lines of a failed command's output shown in the error.
LOG_TAIL_LINES = 40


# -- helper image -------------------------------------------------------------


def _helper_files() -> list[Path]:
    """The helper's .py files, sorted by name: what goes into the image and into the digest."""
    return sorted(HELPER_DIR.glob("*.py"), key=lambda p: p.name)


def _dockerfile() -> Path:
    if not DOCKERFILE.is_file():
        raise ConfigError(
            f"the helper image's Dockerfile is missing: expected {DOCKERFILE} "
            "(images/ exists only in a source checkout or an editable install of localcompute)"
        )
    return DOCKERFILE


def helper_digest() -> str:
    """A short sha256 of the Dockerfile and the helper programs.

    Names are hashed along with contents, each field length-prefixed, so that a
    renamed file or bytes moved from one file to the next also change the digest.
    """
    h = hashlib.sha256()
    for name, data in [("Dockerfile", _dockerfile().read_bytes())] + [
        (p.name, p.read_bytes()) for p in _helper_files()
    ]:
        for field in (name.encode(), data):
            h.update(len(field).to_bytes(8, "big"))
            h.update(field)
    return h.hexdigest()[:16]


def _make_build_context(context: Path) -> None:
    shutil.copyfile(_dockerfile(), context / "Dockerfile")
    files = _helper_files()
    missing = sorted(set(HELPER_PROGRAMS) - {p.name for p in files})
    if missing:
        raise ConfigError(f"the helper programs {', '.join(missing)} are missing from {HELPER_DIR}")
    (context / "helper").mkdir()
    for path in files:
        shutil.copyfile(path, context / "helper" / path.name)


async def build_helper_image(runtime: DockerRuntime, tag: str, base: str) -> None:
    """Build the helper image `tag` on top of `base` (pulled first when it is missing)."""
    try:
        await runtime.ensure_image(base, "if-not-present")
    except (ImageNotFoundError, ContainerError) as e:
        raise ConfigError(
            f"the base image {base} is not on this host and cannot be pulled ({e.message}). "
            "Make a base image without a registry, then build on it: run "
            "`localcompute images bootstrap-base` then "
            f"`localcompute images build --base {BOOTSTRAP_TAG}`"
        ) from e
    digest = helper_digest()
    with tempfile.TemporaryDirectory(prefix="localcompute-helper-") as tmp:
        context = Path(tmp)
        _make_build_context(context)
        log.info("building %s from %s (helper digest %s)", tag, base, digest)
        await runtime.build_image(
            context,
            tag,
            buildargs={"BASE_IMAGE": base},
            labels={LABEL_DIGEST: digest, LABEL_BASE: base},
        )


async def _default_base(runtime: DockerRuntime) -> str:
    """python:3.12-slim, unless only the bootstrapped base is here: no pull is tried then."""
    if not await runtime.image_exists(DEFAULT_BASE) and await runtime.image_exists(BOOTSTRAP_TAG):
        return BOOTSTRAP_TAG
    return DEFAULT_BASE


async def ensure_helper_image(runtime: DockerRuntime, docker: DockerSettings) -> None:
    """Make sure the configured helper image exists and matches this code (server start-up)."""
    tag = docker.helper_image
    labels = await runtime.image_labels(tag)
    build_cmd = "localcompute images build" + ("" if tag == DEFAULT_HELPER_TAG else f" --tag {tag}")
    try:
        digest = helper_digest()
    except ConfigError:
        # An installed package without the Dockerfile cannot build, but can use an existing image.
        if labels is None:
            raise
        log.warning("cannot check the helper image %s against this code; using it as it is", tag)
        return
    if labels is not None and labels.get(LABEL_DIGEST) == digest:
        return
    if docker.pull_policy == "never":
        if labels is None:
            raise ConfigError(
                f"the helper image {tag} is not on this host and pull_policy is 'never': "
                f"run `{build_cmd}`"
            )
        log.warning(
            "the helper image %s was built from other helper code (digest %s, this code %s) "
            "and pull_policy is 'never': using it anyway; run `%s` to bring it up to date",
            tag,
            labels.get(LABEL_DIGEST, "none"),
            digest,
            build_cmd,
        )
        return
    base = (labels or {}).get(LABEL_BASE) or await _default_base(runtime)
    state = "missing" if labels is None else "stale"
    log.info("the helper image %s is %s: building it", tag, state)
    await build_helper_image(runtime, tag, base)


# -- Python base image from debootstrap ---------------------------------------


def _os_release() -> dict[str, str]:
    values: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip().strip("\"'")
    return values


def _deb822_paragraphs(text: str) -> Iterator[dict[str, str]]:
    """The stanzas of a deb822 file, field names lower-cased; continuation lines joined."""
    fields: dict[str, str] = {}
    last = ""
    for line in [*text.splitlines(), ""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if fields:
                yield fields
            fields, last = {}, ""
        elif line[0].isspace() and last:
            fields[last] += " " + line.strip()
        else:
            key, _, value = line.partition(":")
            last = key.strip().lower()
            fields[last] = value.strip()


def _is_release_suite(suites: list[str], codename: str) -> bool:
    """Whether these suites are the release's main archive (not its security archive)."""
    if any(s.endswith("-security") or "/updates" in s for s in suites):
        return False
    return not codename or any(s == codename or s.startswith(codename + "-") for s in suites)


def apt_mirror(etc_apt: Path = Path("/etc/apt"), codename: str | None = None) -> str | None:
    """The Debian mirror this machine's apt uses, so that no host name is written into the code.

    `codename` (default: this machine's, from /etc/os-release) picks the release's
    own archive among the configured ones; security archives never qualify.
    """
    if codename is None:
        codename = _os_release().get("VERSION_CODENAME", "")
    for name in sorted(glob.glob(str(etc_apt / "sources.list.d" / "*.sources"))):
        with contextlib.suppress(OSError):
            for stanza in _deb822_paragraphs(Path(name).read_text()):
                if stanza.get("enabled", "yes").lower() == "no":
                    continue
                if "deb" not in stanza.get("types", "").split():
                    continue
                uris = stanza.get("uris", "").split()
                if uris and _is_release_suite(stanza.get("suites", "").split(), codename):
                    return uris[0]
    with contextlib.suppress(OSError):
        for line in (etc_apt / "sources.list").read_text().splitlines():
            words = line.split("#", 1)[0].split()
            if not words or words[0] != "deb":
                continue
            words = words[1:]
            if words and words[0].startswith("["):  # [arch=amd64 signed-by=…]
                while words and not words[0].endswith("]"):
                    words = words[1:]
                words = words[1:]
            if len(words) >= 2 and _is_release_suite([words[1]], codename):
                return words[0]
    return None


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
    runtime: DockerRuntime,
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


# -- busybox image ------------------------------------------------------------

_PT_INTERP = 3


def _elf_interpreter(path: Path) -> bool:
    """Whether the ELF file at `path` names a program interpreter (is dynamically linked)."""
    with path.open("rb") as f:
        head = f.read(64)
        if len(head) < 52 or head[:4] != b"\x7fELF":
            raise ConfigError(f"{path} is not an ELF executable")
        is64 = head[4] == 2
        order = "<" if head[5] == 1 else ">"
        if is64:
            (phoff,) = struct.unpack_from(order + "Q", head, 32)
            phentsize, phnum = struct.unpack_from(order + "HH", head, 54)
        else:
            (phoff,) = struct.unpack_from(order + "I", head, 28)
            phentsize, phnum = struct.unpack_from(order + "HH", head, 42)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        if len(table) < (i + 1) * phentsize:
            raise ConfigError(f"{path}: truncated ELF program header table")
        (p_type,) = struct.unpack_from(order + "I", table, i * phentsize)
        if p_type == _PT_INTERP:
            return True
    return False


def _busybox_tar(busybox: Path, applets: list[str], out: Path) -> None:
    mtime = int(busybox.stat().st_mtime)

    def entry(name: str, kind: bytes, mode: int, **extra: object) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = kind, mode, mtime
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        for key, value in extra.items():
            setattr(info, key, value)
        return info

    def text(name: str, content: str) -> tuple[tarfile.TarInfo, io.BytesIO]:
        data = content.encode()
        return entry(name, tarfile.REGTYPE, 0o644, size=len(data)), io.BytesIO(data)

    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, mode in (("bin", 0o755), ("etc", 0o755), ("root", 0o700), ("tmp", 0o1777)):
            tar.addfile(entry(name, tarfile.DIRTYPE, mode))
        tar.addfile(entry("home", tarfile.DIRTYPE, 0o755))
        tar.addfile(
            entry(
                "home/user", tarfile.DIRTYPE, 0o755, uid=1000, gid=1000, uname="user", gname="user"
            )
        )
        with busybox.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            tar.addfile(entry("bin/busybox", tarfile.REGTYPE, 0o755, size=size), f)
        for applet in applets:
            tar.addfile(entry(f"bin/{applet}", tarfile.SYMTYPE, 0o777, linkname="busybox"))
        # Job containers run as uid 1000 when the server runs as root: give it a name.
        tar.addfile(
            *text(
                "etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
            )
        )
        tar.addfile(*text("etc/group", "root:x:0:\nuser:x:1000:\n"))


async def import_busybox(
    runtime: DockerRuntime, tag: str = BUSYBOX_TAG, busybox: Path | None = None
) -> None:
    """Import the host's static busybox as a tiny image with PATH=/bin and `sh` as its command."""
    if busybox is None:
        found = shutil.which("busybox")
        if found is None:
            raise ConfigError("no busybox on this host: run `apt-get install busybox-static`")
        busybox = Path(found)
    busybox = busybox.resolve()
    if not busybox.is_file():
        raise ConfigError(f"{busybox} is not a file")
    # A dynamic busybox would need the host's libc inside the image.
    if await asyncio.to_thread(_elf_interpreter, busybox):
        raise ConfigError(
            f"{busybox} is dynamically linked: run `apt-get install busybox-static` "
            "for a static one"
        )
    proc = await asyncio.create_subprocess_exec(
        str(busybox),
        "--list",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise ConfigError(f"`{busybox} --list` failed: {err.decode(errors='replace').strip()}")
    applets = sorted(
        {a for a in out.decode().split() if a and "/" not in a and a not in (".", "..", "busybox")}
    )
    with tempfile.TemporaryDirectory(prefix="localcompute-busybox-") as tmp:
        tarball = Path(tmp) / "busybox.tar"
        await asyncio.to_thread(_busybox_tar, busybox, applets, tarball)
        log.info("importing %s (%d applets) as %s", busybox, len(applets), tag)
        await runtime.import_image(tarball, tag, changes=BUSYBOX_CHANGES)
