"""Turn a job's outputs folder into the results the consumer may download.

Runs as a plain script inside the helper container (standard library only, nothing
else from localcompute), as a non-root user, over the algorithm's outputs. The
algorithm is untrusted: it may leave symlinks to host files, FIFOs
that would block a reader, or names crafted to break log lines. So nothing is ever
followed, and anything but regular files and directories with sane names is refused
(left out and logged) rather than failing the whole job.

Each top-level regular file becomes a result of its own; all top-level directories
are packed together into one uncompressed PAX tar. With --archive (Ocean Node's way)
the whole folder becomes the one result outputs.tar, its entries under outputs/.
A JSON manifest lists the results with their sizes and sha256 sums, and the
refusals. Stdout becomes filter.log.

The outputs lie under the job's disk quota and the results outside it, so the outputs
are moved, not copied: each file is copied last chunk first and cut short behind the
copy, and the two together never hold more than one chunk twice. Chunks of zeros are
left as holes, so a sparse file cannot become more on the host than in the quota.
A file the filter may not write to (the algorithm made it read-only) is copied as is.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import io
import json
import os
import stat
import sys
import tarfile
import traceback
import unicodedata
import urllib.parse
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

EXIT_OK = 0
EXIT_ERROR = 1

CHUNK_SIZE = 64 * 1024
# What a move holds twice at most; the outputs shrink by this much at a time.
MOVE_CHUNK = 4 * 1024 * 1024
_ZEROS = memoryview(bytes(MOVE_CHUNK))
MAX_NAME_BYTES = 255
TAR_STEM = "outputs"
# C0/C1 controls and the Unicode line and paragraph separators: any of them in a name
# could split or rewrite a line of the log, or confuse whoever reads the names.
UNSAFE_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})
# O_NOFOLLOW: a symlink swapped in after lstat is not followed. O_NONBLOCK: a FIFO
# swapped in would otherwise block open() forever; it does nothing to regular files.
OPEN_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Unreadable(Exception):
    """An item that cannot be read: it is refused, the run goes on."""


@dataclass(frozen=True)
class Result:
    filename: str
    filesize: int
    sha256: str


@dataclass(frozen=True)
class Refusal:
    path: str
    reason: str


@dataclass
class Report:
    """What the manifest will say, logged as it is learnt."""

    results: list[Result] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)

    def add_result(self, result: Result, detail: str) -> None:
        self.results.append(result)
        log(f"result {display_name(result.filename)}: {detail}")

    def refuse(self, path: str, reason: str) -> None:
        self.refused.append(Refusal(manifest_name(path), reason))
        log(f"refused {display_name(path)}: {reason}")

    def manifest(self) -> dict[str, Any]:
        return {
            "results": [asdict(result) for result in self.results],
            "refused": [asdict(refusal) for refusal in self.refused],
        }


def log(message: str) -> None:
    """One plain line, flushed at once so the log is complete even if the container is killed."""
    print(message, flush=True)


# --- names -----------------------------------------------------------------------------------


def name_problem(name: str) -> str | None:
    """Why a name cannot be stored and shown safely, or None when it can."""
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        # os.scandir decodes undecodable bytes to lone surrogates, which are not UTF-8.
        return "name is not valid UTF-8"
    if len(encoded) > MAX_NAME_BYTES:
        return f"name longer than {MAX_NAME_BYTES} bytes"
    if any(unicodedata.category(char) in UNSAFE_CATEGORIES for char in name):
        return "name contains a control character"
    return None


def display_name(path: str) -> str:
    """A one-line, printable form of a possibly hostile path, for the log."""
    text = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(_escape(char) for char in text)


def _escape(char: str) -> str:
    if unicodedata.category(char) in UNSAFE_CATEGORIES:
        return char.encode("unicode_escape").decode("ascii")
    return char


def manifest_name(path: str) -> str:
    """The path itself when JSON can carry it faithfully (it escapes controls), else its
    display form: a lone surrogate would make the manifest unreadable to strict parsers."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return display_name(path)
    return path


# --- inspecting entries ----------------------------------------------------------------------


def type_problem(mode: int) -> str | None:
    """Why a file type is refused, or None for regular files and directories."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "not a regular file or directory"


def cannot_read(exc: OSError) -> str:
    return f"cannot be read: {exc.strerror or type(exc).__name__}"


def list_dir(path: str) -> list[os.DirEntry[str]]:
    """A folder's entries in name order, so results and tar members come out stable."""
    with os.scandir(path) as entries:
        return sorted(entries, key=lambda entry: entry.name)


def inspect(entry: os.DirEntry[str], rel: str, report: Report) -> os.stat_result | None:
    """The entry's lstat if it may be kept; otherwise refuse it and return None."""
    problem = name_problem(entry.name)
    info: os.stat_result | None = None
    if problem is None:
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError as exc:
            problem = cannot_read(exc)
        else:
            problem = type_problem(info.st_mode)
    if problem is not None:
        report.refuse(rel, problem)
        return None
    return info


def open_regular(path: str, expected: os.stat_result) -> tuple[BinaryIO, bool]:
    """Open a file that lstat found regular, and check it still is that very file.
    Also whether it was opened for writing too, so that a move may cut it short.

    The algorithm has stopped, so nothing should change between lstat and open;
    checking anyway costs one fstat.
    """
    try:
        fd, movable = os.open(path, os.O_RDWR | OPEN_FLAGS), True
    except OSError:
        try:
            fd, movable = os.open(path, os.O_RDONLY | OPEN_FLAGS), False
        except OSError as exc:
            raise Unreadable(cannot_read(exc)) from exc
    try:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode) or (found.st_dev, found.st_ino) != (
            expected.st_dev,
            expected.st_ino,
        ):
            raise Unreadable("changed while being read")
        return os.fdopen(fd, "r+b" if movable else "rb"), movable
    except BaseException:
        os.close(fd)
        raise


def transfer(source: BinaryIO, movable: bool, size: int, out: BinaryIO, at: int) -> None:
    """Write the `size` bytes of `source` into `out` from offset `at`.

    Movable: last chunk first, cutting `source` short behind each, so the pair holds
    one chunk twice at most. Otherwise first chunk first, `source` left as it was.
    Chunks of zeros are never written: `out` keeps a hole there.
    """
    out.flush()
    src, dst = source.fileno(), out.fileno()
    os.ftruncate(dst, max(os.fstat(dst).st_size, at + size))
    starts = range(0, size, MOVE_CHUNK)
    for start in reversed(starts) if movable else starts:
        length = min(MOVE_CHUNK, size - start)
        try:
            chunk = os.pread(src, length, start)
        except OSError as exc:
            raise Unreadable(cannot_read(exc)) from exc
        if len(chunk) != length:
            raise Unreadable("changed while being read")
        if chunk != _ZEROS[:length]:
            written = 0
            while written < length:
                written += os.pwrite(dst, chunk[written:], at + start + written)
        if movable:
            os.ftruncate(src, start)


# --- top-level files -------------------------------------------------------------------------


def move_result(entry: os.DirEntry[str], expected: os.stat_result, results: Path) -> Result:
    """Move one file into results (see transfer), then hash what arrived."""
    dest = results / entry.name
    try:
        # "xb": results starts empty, so an existing name is a bug, never to be overwritten.
        opened, movable = open_regular(entry.path, expected)
        with opened as source, open(dest, "xb") as out:
            transfer(source, movable, os.fstat(source.fileno()).st_size, out, 0)
    except Unreadable:
        dest.unlink(missing_ok=True)
        raise
    if movable:
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
    size, sha256 = hash_file(dest)
    return Result(entry.name, size, sha256)


# --- the tar of top-level directories --------------------------------------------------------


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
        tar.addfile(tar_info(TAR_STEM, os.lstat(outputs), tarfile.DIRTYPE))
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


def hash_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as source:
        while chunk := source.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


# --- main ------------------------------------------------------------------------------------


def run(outputs: Path, results: Path, *, archive: bool = False) -> Report:
    report = Report()
    if archive:
        pack_everything(outputs, results / f"{TAR_STEM}.tar", report)
        return report
    directories: list[tuple[str, os.stat_result]] = []
    for entry in list_dir(str(outputs)):
        info = inspect(entry, entry.name, report)
        if info is None:
            continue
        if stat.S_ISDIR(info.st_mode):
            directories.append((entry.name, info))
            continue
        try:
            result = move_result(entry, info, results)
        except Unreadable as exc:
            report.refuse(entry.name, str(exc))
            continue
        report.add_result(result, f"{result.filesize} bytes")
    if directories:
        taken = {result.filename for result in report.results}
        pack_directories(outputs, directories, results / tar_name(taken), report)
    return report


def write_manifest(path: Path, report: Report) -> None:
    """Whole or not at all: the engine takes a manifest as the sign that the filter
    finished moving the outputs (a server restarted meanwhile resumes on it)."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        json.dump(report.manifest(), handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


# --- upload, where the node shares no disk with the server (Swarm) ------------------------

STAGE_URL_VAR = "LOCALCOMPUTE_STAGE_URL"
STAGE_TOKEN_VAR = "LOCALCOMPUTE_STAGE_TOKEN"
UPLOAD_TIMEOUT = 60.0


class UploadError(Exception):
    """The server did not take a file."""


def upload_all(url: str, token: str, results: Path, manifest: Path, own_log: Path | None) -> None:
    """Each result (its sha256 said, for the server to check), the algorithm's own log,
    then the manifest: last, since the server takes it as the sign that all arrived."""
    data = json.loads(manifest.read_text(encoding="utf-8"))
    for entry in data.get("results", []):
        name = entry["filename"]
        put_file(url, token, f"results/{name}", results / name, entry["sha256"])
    if own_log is not None:
        put_file(url, token, "logs/algorithm.log", own_log, None)
    put_file(url, token, "meta/filter.json", manifest, None)


def put_file(url: str, token: str, name: str, path: Path, sha256: str | None) -> None:
    parts = urllib.parse.urlsplit(url.rstrip("/") + "/" + urllib.parse.quote(name))
    connection_type = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_type(parts.hostname or "", parts.port, timeout=UPLOAD_TIMEOUT)
    with contextlib.closing(connection), path.open("rb") as body:
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/octet-stream",
            "Content-Length": str(os.fstat(body.fileno()).st_size),
            **({"X-Content-Sha256": sha256} if sha256 else {}),
        }
        connection.request("PUT", parts.path, body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read(2000).decode("utf-8", "replace")
        if response.status >= 300:
            raise UploadError(f"{name}: the server answered {response.status}: {answer}")


def own_log_file(logs: Path | None) -> Path | None:
    """The algorithm's own algorithm.log, if it is a regular file (never a link it planted)."""
    if logs is None:
        return None
    path = logs / "algorithm.log"
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return path if stat.S_ISREG(info.st_mode) else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Turn a job's outputs into its results.")
    parser.add_argument("--outputs", type=Path, required=True, help="the algorithm's outputs")
    parser.add_argument("--results", type=Path, required=True, help="empty folder for results")
    parser.add_argument("--manifest", type=Path, required=True, help="JSON manifest to write")
    parser.add_argument(
        "--archive", action="store_true", help="one outputs.tar of everything, under outputs/"
    )
    parser.add_argument(
        "--logs", type=Path, default=None, help="the algorithm's logs, uploaded with the results"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Names are escaped before printing, but a container's stdout may still be ASCII;
    # a log line must never be what makes the filter fail.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        report = run(args.outputs, args.results, archive=args.archive)
        write_manifest(args.manifest, report)
        url = os.environ.get(STAGE_URL_VAR)
        if url:
            token = os.environ.get(STAGE_TOKEN_VAR, "")
            upload_all(url, token, args.results, args.manifest, own_log_file(args.logs))
            log(f"filter uploaded {len(report.results)} results to the server")
    except UploadError as exc:
        log(f"filter failed: {exc}")
        return EXIT_ERROR
    except Exception:
        log("filter failed with an unexpected error:")
        log(traceback.format_exc().rstrip())
        return EXIT_ERROR
    log(f"filter finished: {len(report.results)} results, {len(report.refused)} refused")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
