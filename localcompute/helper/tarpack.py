"""The filter's tar of directories: all top-level directories of the outputs in one
uncompressed PAX tar (or, with --archive, the whole folder as outputs.tar, under
outputs/), each file moved into it as the filter moves a top-level file.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

if __package__:  # imported as part of localcompute (the engine, the tests)
    from localcompute.helper.entries import (
        Report,
        Result,
        Unreadable,
        cannot_read,
        hash_file,
        inspect,
        list_dir,
        open_regular,
        transfer,
    )
else:  # run as a program in the helper image, beside the other helper modules
    from entries import (  # type: ignore[import-not-found,no-redef]
        Report,
        Result,
        Unreadable,
        cannot_read,
        hash_file,
        inspect,
        list_dir,
        open_regular,
        transfer,
    )

TAR_STEM = "outputs"


def tar_name(taken: set[str]) -> str:
    """outputs.tar, or outputs.1.tar and so on when a top-level file already has the name."""
    name = f"{TAR_STEM}.tar"
    number = 0
    while name in taken:
        number += 1
        name = f"{TAR_STEM}.{number}.tar"
    return name


def tar_info(rel: str, info: os.stat_result, kind: bytes) -> tarfile.TarInfo:
    """A member built from lstat, never from the file it might point to.

    Owner ids and names are blanked so that the archive reveals nothing about the
    host's users; setuid, setgid and sticky bits are dropped.
    """
    member = tarfile.TarInfo(rel)
    member.type = kind
    member.mode = stat.S_IMODE(info.st_mode) & 0o777
    member.mtime = int(info.st_mtime)
    member.size = info.st_size if kind == tarfile.REGTYPE else 0
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    return member


class TarPacker:
    """Packs directory trees into one tar, refusing what may not go in.

    `out` is the open file beneath `tar`: file data is moved into it at the archive's
    offset (see transfer), where tarfile would copy it."""

    def __init__(
        self, tar: tarfile.TarFile, out: BinaryIO, outputs: Path, report: Report, prefix: str = ""
    ) -> None:
        self.tar = tar
        self.out = out
        self.outputs = outputs
        self.report = report
        self.prefix = prefix  # put before every member's name, e.g. "outputs/"
        self.files = 0

    def add_tree(self, top: str, info: os.stat_result) -> None:
        """Add top and everything below it, depth first in name order.

        An explicit stack instead of recursion: an algorithm nesting folders thousands
        deep must not crash the filter with a RecursionError.
        """
        children = self.add_dir(top, info)
        stack: list[tuple[str, Iterator[os.DirEntry[str]]]] = []
        if children is not None:
            stack.append((top, iter(children)))
        while stack:
            rel, pending = stack[-1]
            entry = next(pending, None)
            if entry is None:
                stack.pop()
                continue
            child = f"{rel}/{entry.name}"
            child_info = inspect(entry, child, self.report)
            if child_info is None:
                continue
            if stat.S_ISDIR(child_info.st_mode):
                grandchildren = self.add_dir(child, child_info)
                if grandchildren is not None:
                    stack.append((child, iter(grandchildren)))
            else:
                self.add_file(entry.path, child, child_info)

    def add_dir(self, rel: str, info: os.stat_result) -> list[os.DirEntry[str]] | None:
        """Add a directory's member and return its entries; refuse it if it cannot be listed."""
        try:
            children = list_dir(str(self.outputs / rel))
        except OSError as exc:
            self.report.refuse(rel, cannot_read(exc))
            return None
        self.tar.addfile(tar_info(self.prefix + rel, info, tarfile.DIRTYPE))
        return children

    def add_file(self, path: str, rel: str, info: os.stat_result) -> None:
        try:
            opened, movable = open_regular(path, info)
            with opened as source:
                member = tar_info(self.prefix + rel, os.fstat(source.fileno()), tarfile.REGTYPE)
                self.add_member_data(member, source, movable)
        except Unreadable as exc:
            self.report.refuse(rel, str(exc))
            return
        if movable:
            with contextlib.suppress(OSError):
                os.unlink(path)
        self.files += 1

    def add_member_data(self, member: tarfile.TarInfo, source: BinaryIO, movable: bool) -> None:
        """What tarfile's addfile does (header, data, padding to a block), with the data
        moved in rather than copied; the member list, which only reading uses, stays empty."""
        header = member.tobuf(self.tar.format, self.tar.encoding, self.tar.errors)
        self.out.write(header)
        self.tar.offset += len(header)
        transfer(source, movable, member.size, self.out, self.tar.offset)
        blocks, remainder = divmod(member.size, tarfile.BLOCKSIZE)
        self.out.seek(self.tar.offset + member.size)
        if remainder:
            self.out.write(tarfile.NUL * (tarfile.BLOCKSIZE - remainder))
            blocks += 1
        self.tar.offset += blocks * tarfile.BLOCKSIZE


@contextlib.contextmanager
def new_tar(dest: Path) -> Iterator[tuple[tarfile.TarFile, BinaryIO]]:
    # "xb": exclusive creation, for the same reason as the top-level files.
    with (
        open(dest, "xb") as out,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        yield tar, out


def pack_directories(
    outputs: Path, directories: list[tuple[str, os.stat_result]], dest: Path, report: Report
) -> None:
    with new_tar(dest) as (tar, out):
        packer = TarPacker(tar, out, outputs, report)
        for name, info in directories:
            packer.add_tree(name, info)
    size, sha256 = hash_file(dest)
    report.add_result(Result(dest.name, size, sha256), f"{packer.files} files, {size} bytes")


def pack_everything(outputs: Path, dest: Path, report: Report) -> None:
    """The whole outputs folder as one tar, entries under outputs/ (Ocean Node's
    getArchive('/data/outputs')); made even when the folder is empty."""
    with new_tar(dest) as (tar, out):
        packer = TarPacker(tar, out, outputs, report, prefix=f"{TAR_STEM}/")
        # Followed: the folder the engine named (a mount, or, on the host, the link
        # /proc/self/fd/N, whose own mode is not the folder's), never the algorithm's.
        tar.addfile(tar_info(TAR_STEM, os.stat(outputs), tarfile.DIRTYPE))
        for entry in list_dir(str(outputs)):
            info = inspect(entry, entry.name, report)
            if info is None:
                continue
            if stat.S_ISDIR(info.st_mode):
                packer.add_tree(entry.name, info)
            else:
                packer.add_file(entry.path, entry.name, info)
    size, sha256 = hash_file(dest)
    report.add_result(Result(dest.name, size, sha256), f"{packer.files} files, {size} bytes")
