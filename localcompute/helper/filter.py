"""Turn a job's outputs folder into the results the consumer may download.

Runs as a program inside the helper container (standard library only, nothing from
localcompute but its sibling helper modules: entries.py, tarpack.py, upload.py), as a
non-root user, over the algorithm's outputs. The
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
are moved, never held twice. Where one file system and one mount hold both (a watched
folder; the filter sees the job's whole folder) a top-level file is renamed: no byte is
copied, and the one read of it is for its sha256. Elsewhere (a loop-mounted image is a
file system of its own; with --copy, where a renamed file would still count against the
job's quota) each file is copied first chunk first with a hole punched behind the copy
(last chunk first, cut short, where holes cannot be punched), so the two together never
hold more than one chunk twice. Chunks of zeros are left as holes, so a sparse file cannot
become more on the host than in the quota. A file the filter may not write to (the
algorithm made it read-only) is copied as is.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import importlib
import io
import json
import os
import stat
import sys
import traceback
from pathlib import Path
from typing import Any, BinaryIO, cast

if __package__:  # imported as part of localcompute (the engine, the tests)
    from localcompute.helper.contract import (
        EXIT_FILTER_FAILED,
        EXIT_OK,
        STAGE_TOKEN_VAR,
        STAGE_URL_VAR,
    )
    from localcompute.helper.entries import (
        Report,
        Result,
        Unreadable,
        cannot_read,
        hash_file,
        inspect,
        list_dir,
        log,
        open_regular,
        transfer,
    )
else:  # run as a program in the helper image, beside the other helper modules
    from contract import (  # type: ignore[import-not-found,no-redef]
        EXIT_FILTER_FAILED,
        EXIT_OK,
        STAGE_TOKEN_VAR,
        STAGE_URL_VAR,
    )
    from entries import (  # type: ignore[import-not-found,no-redef]
        Report,
        Result,
        Unreadable,
        cannot_read,
        hash_file,
        inspect,
        list_dir,
        log,
        open_regular,
        transfer,
    )


def _sibling(name: str) -> Any:
    """A sibling helper module, imported when first needed: most runs pack no folder
    (tarfile) and upload nothing (http.client), and the import is a part of every
    step's start."""
    if __package__:
        return importlib.import_module(f"{__package__}.{name}")
    return importlib.import_module(name)


# --- top-level files -------------------------------------------------------------------------


# A result's mode, as a copy would have it: readable, not executable, nothing an ACL of
# the algorithm's granted beyond that (a chmod narrows an ACL's mask too).
RESULT_MODE = 0o644
# Where a rename cannot be had: another file system or mount, or one that will not.
_NOT_HERE = frozenset({errno.EXDEV, errno.EPERM, errno.EACCES, errno.EROFS, errno.ENOSYS})


def move_result(
    entry: os.DirEntry[str], expected: os.stat_result, results: Path, *, rename: bool = True
) -> Result:
    """Move one file into results: renamed where it can be (then hashed, its one read),
    else copied by transfer, hashing it on the way (or what arrived, where it had to go
    last chunk first)."""
    dest = results / entry.name
    # Opened first: a file the filter cannot read is refused where it lies, and what is
    # hashed is the very file that moved.
    opened, movable = open_regular(entry.path, expected)
    with opened as source:
        if rename:
            renamed = rename_result(entry.path, source, expected, dest)
            if renamed is not None:
                return renamed
        digest = hashlib.sha256()
        try:
            # "xb": results starts empty, so an existing name is a bug, never to be overwritten.
            with open(dest, "xb") as out:
                size = os.fstat(source.fileno()).st_size
                hashed = transfer(source, movable, size, out, 0, digest)
        except Unreadable:
            dest.unlink(missing_ok=True)
            raise
    if movable:
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
    if not hashed:
        size, sha256 = hash_file(dest)
        return Result(entry.name, size, sha256)
    return Result(entry.name, size, digest.hexdigest())


def rename_result(
    path: str, source: BinaryIO, expected: os.stat_result, dest: Path
) -> Result | None:
    """Rename the file `source` has open into results and hash it there; None where a
    rename cannot be had here (the caller copies)."""
    if os.path.lexists(dest):
        raise Unreadable("a result of that name exists already")
    try:
        os.rename(path, dest)
    except OSError as exc:
        if exc.errno in _NOT_HERE:
            return None
        raise Unreadable(cannot_read(exc)) from exc
    try:
        moved = os.lstat(dest)
        if (moved.st_dev, moved.st_ino) != (expected.st_dev, expected.st_ino):
            raise Unreadable("changed while being read")
        with contextlib.suppress(OSError):
            os.fchmod(source.fileno(), RESULT_MODE)
        # open_regular's file is a buffered one (BinaryIO does not say it can readinto).
        digest = hashlib.file_digest(cast(io.BufferedReader, source), "sha256")
        size = source.tell()
        if size != os.fstat(source.fileno()).st_size:
            raise Unreadable("changed while being read")
    except Unreadable:
        dest.unlink(missing_ok=True)
        raise
    except OSError as exc:
        dest.unlink(missing_ok=True)
        raise Unreadable(cannot_read(exc)) from exc
    return Result(dest.name, size, digest.hexdigest())


# --- main ------------------------------------------------------------------------------------


def run(outputs: Path, results: Path, *, archive: bool = False, rename: bool = True) -> Report:
    report = Report()
    if archive:
        tarpack = _sibling("tarpack")
        tarpack.pack_everything(outputs, results / f"{tarpack.TAR_STEM}.tar", report)
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
            result = move_result(entry, info, results, rename=rename)
        except Unreadable as exc:
            report.refuse(entry.name, str(exc))
            continue
        report.add_result(result, f"{result.filesize} bytes")
    if directories:
        taken = {result.filename for result in report.results}
        tarpack = _sibling("tarpack")
        tarpack.pack_directories(outputs, directories, results / tarpack.tar_name(taken), report)
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Turn a job's outputs into its results.")
    parser.add_argument("--outputs", type=Path, required=True, help="the algorithm's outputs")
    parser.add_argument("--results", type=Path, required=True, help="empty folder for results")
    parser.add_argument("--manifest", type=Path, required=True, help="JSON manifest to write")
    parser.add_argument(
        "--archive", action="store_true", help="one outputs.tar of everything, under outputs/"
    )
    parser.add_argument(
        "--copy",
        action="store_true",
        help="copy the files, never rename them (a renamed file would still count against "
        "the job's quota: an XFS project)",
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
        report = run(args.outputs, args.results, archive=args.archive, rename=not args.copy)
        write_manifest(args.manifest, report)
        url = os.environ.get(STAGE_URL_VAR)
        if url:
            upload = _sibling("upload")
            token = os.environ.get(STAGE_TOKEN_VAR, "")
            try:
                upload.upload_all(
                    url, token, args.results, args.manifest, upload.own_log_file(args.logs)
                )
            except upload.UploadError as exc:
                log(f"filter failed: {exc}")
                return EXIT_FILTER_FAILED
            log(f"filter uploaded {len(report.results)} results to the server")
    except Exception:
        log("filter failed with an unexpected error:")
        log(traceback.format_exc().rstrip())
        return EXIT_FILTER_FAILED
    log(f"filter finished: {len(report.results)} results, {len(report.refused)} refused")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
