"""The busybox image: only the host's static busybox, its applets and a user.

Small, fast to make, and enough to try algorithms and to run the Docker tests.
This module owns checking that the binary is static (a small ELF reader), writing
the image's root filesystem as a tar, and importing it.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import shutil
import struct
import tarfile
import tempfile
from pathlib import Path

from localcompute.core.errors import ConfigError
from localcompute.runtime import ContainerRuntime

# The package's name, as before it was split into modules: log lines keep their source.
log = logging.getLogger("localcompute.images")

BUSYBOX_TAG = "localcompute/busybox:latest"
BUSYBOX_CHANGES = ["ENV PATH=/bin", 'CMD ["sh"]']

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
    runtime: ContainerRuntime, tag: str = BUSYBOX_TAG, busybox: Path | None = None
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
