"""What the output filter may take of an algorithm's outputs, and what it says of them:
names that cannot break a log line, entries inspected without following anything, files
read (and moved, last chunk first) without blocking, and the report the manifest is
made of. Standard library only: copied into the helper image with filter.py.
"""

from __future__ import annotations

import hashlib
import os
import stat
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

CHUNK_SIZE = 1024 * 1024  # a read a loop turn when hashing
# What a move holds twice at most; the outputs shrink by this much at a time.
MOVE_CHUNK = 4 * 1024 * 1024
# Chunks a large file's hashing may lag behind its copy (memory: a few MOVE_CHUNKs).
HASH_AHEAD = 2
_ZEROS = memoryview(bytes(MOVE_CHUNK))
MAX_NAME_BYTES = 255
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


def transfer(
    source: BinaryIO, movable: bool, size: int, out: BinaryIO, at: int, digest: Any = None
) -> bool:
    """Write the `size` bytes of `source` into `out` from offset `at`; feed them to
    `digest` (a hashlib object) on the way when given. Whether `digest` saw them all.

    Movable: a hole is punched in `source` behind each chunk, so the pair holds one chunk
    twice at most, and the bytes go first to last, which is how a digest must see them.
    Where the file system cannot punch holes: last chunk first, cutting `source` short
    behind each, and `digest` is left alone (the caller hashes what arrived). Otherwise
    first chunk first, `source` left as it was. Chunks of zeros are never written: `out`
    keeps a hole there.
    """
    out.flush()
    src, dst = source.fileno(), out.fileno()
    os.ftruncate(dst, max(os.fstat(dst).st_size, at + size))
    starts = range(0, size, MOVE_CHUNK)
    backwards = movable and not _punch_hole(src, 0, 0)
    hashing = digest is not None and not backwards
    hasher = _Hasher(digest) if hashing and size > MOVE_CHUNK else None
    try:
        for start in reversed(starts) if backwards else starts:
            length = min(MOVE_CHUNK, size - start)
            try:
                chunk = os.pread(src, length, start)
            except OSError as exc:
                raise Unreadable(cannot_read(exc)) from exc
            if len(chunk) != length:
                raise Unreadable("changed while being read")
            if hasher is not None:
                hasher.update(chunk)
            elif hashing:
                digest.update(chunk)
            if chunk != _ZEROS[:length]:
                written = 0
                while written < length:
                    written += os.pwrite(dst, chunk[written:], at + start + written)
            if backwards:
                os.ftruncate(src, start)
            elif movable:
                _punch_hole(src, start, length)
    finally:
        if hasher is not None:
            hasher.close()
    return hashing


class _Hasher:
    """A digest fed on a thread of its own, in order, at most HASH_AHEAD chunks behind:
    hashing lets go of the GIL, so a large file's sha256 (for 512 MiB, about 0.3 s on
    these cores) runs beside its reads and writes instead of between them."""

    def __init__(self, digest: Any) -> None:
        import queue  # only for a file of more than one chunk: every filter would pay it
        import threading

        self._digest = digest
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=HASH_AHEAD)
        self._thread = threading.Thread(target=self._feed, name="filter-hasher", daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            self._digest.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._chunks.put(chunk)

    def close(self) -> None:
        """Once every chunk given is in the digest."""
        self._chunks.put(None)
        self._thread.join()


_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_fallocate: Any = None


def _punch_hole(fd: int, offset: int, length: int) -> bool:
    """Free `length` bytes of the file at `offset` (length 0: only ask whether this file
    system can); False where it cannot (no such call, or not supported there)."""
    global _fallocate
    if _fallocate is None:
        try:
            import ctypes
            import ctypes.util

            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            call = libc.fallocate
            call.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
            _fallocate = call
        except (OSError, AttributeError):
            _fallocate = False
    if _fallocate is False:
        return False
    # A zero length is refused (EINVAL) by every file system: ask with one byte past the
    # end instead, which frees nothing.
    probe = length == 0
    where = os.fstat(fd).st_size if probe else offset
    mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
    return int(_fallocate(fd, mode, where, 1 if probe else length)) == 0


def hash_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as source:
        while chunk := source.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
