"""filter.py over hostile outputs trees: results, the tar, refusals and the manifest."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest

from localcompute.helper import entries
from localcompute.helper import filter as output_filter
from tests.unit.test_helper_fetch import STANDALONE, copy_helper

BIG = bytes(range(256)) * 800  # 200 KiB: more than one 64 KiB chunk


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    outputs = tmp_path / "outputs"
    results = tmp_path / "results"
    outputs.mkdir()
    results.mkdir()
    return outputs, results, tmp_path / "manifest.json"


def run_filter(dirs: tuple[Path, Path, Path], *, copy: bool = False) -> int:
    """The filter over `dirs`: outputs and results on one file system, so it renames;
    `copy`: as where it cannot (a loop image) or may not (an XFS project)."""
    outputs, results, manifest = dirs
    return output_filter.main(
        ["--outputs", str(outputs), "--results", str(results), "--manifest", str(manifest)]
        + (["--copy"] if copy else [])
    )


def read_manifest(dirs: tuple[Path, Path, Path]) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(dirs[2].read_text(encoding="utf-8"))
    return manifest


def build_hostile_tree(outputs: Path) -> None:
    (outputs / "a.csv").write_bytes(b"x,y\n1,2\n")
    (outputs / "b.bin").write_bytes(BIG)
    (outputs / "outputs.tar").write_bytes(b"not really a tar")
    (outputs / "passwd-link").symlink_to("/etc/passwd")
    (outputs / "dir-link").symlink_to("sub")
    os.mkfifo(outputs / "fifo")
    (outputs / "bad\nname").write_bytes(b"hidden")
    sub = outputs / "sub"
    (sub / "deeper").mkdir(parents=True)
    (sub / "a.txt").write_bytes(b"sub a")
    (sub / "deeper" / "b.txt").write_bytes(b"deeper b")
    (sub / "link").symlink_to("/etc/passwd")
    (sub / "deeper" / "up").symlink_to("..")
    os.mknod(sub / "sock", stat.S_IFSOCK | 0o600)
    (outputs / "sub2").mkdir()
    (outputs / "sub2" / "c.txt").write_bytes(b"sub2 c")
    (outputs / "empty").mkdir()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_hostile_tree(dirs: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    outputs, results, _ = dirs
    build_hostile_tree(outputs)

    assert run_filter(dirs) == 0

    manifest = read_manifest(dirs)
    names = [result["filename"] for result in manifest["results"]]
    assert names == ["a.csv", "b.bin", "outputs.tar", "outputs.1.tar"]
    assert sorted(path.name for path in results.iterdir()) == sorted(names)
    for result in manifest["results"]:
        path = results / result["filename"]
        assert result["sha256"] == sha256(path)
        assert result["filesize"] == path.stat().st_size
    assert (results / "a.csv").read_bytes() == b"x,y\n1,2\n"
    assert (results / "b.bin").read_bytes() == BIG
    assert (results / "outputs.tar").read_bytes() == b"not really a tar"

    assert manifest["refused"] == [
        {"path": "bad\nname", "reason": "name contains a control character"},
        {"path": "dir-link", "reason": "symbolic link"},
        {"path": "fifo", "reason": "FIFO"},
        {"path": "passwd-link", "reason": "symbolic link"},
        {"path": "sub/deeper/up", "reason": "symbolic link"},
        {"path": "sub/link", "reason": "symbolic link"},
        {"path": "sub/sock", "reason": "socket"},
    ]
    out = capsys.readouterr().out
    assert "refused bad\\nname: name contains a control character\n" in out
    assert "refused passwd-link: symbolic link\n" in out
    assert "refused sub/link: symbolic link\n" in out
    assert "refused fifo: FIFO\n" in out
    assert "result a.csv: 8 bytes\n" in out
    size = (results / "outputs.1.tar").stat().st_size
    assert f"result outputs.1.tar: 3 files, {size} bytes\n" in out
    assert out.rstrip().endswith("filter finished: 4 results, 7 refused")


def test_the_tar_holds_the_directories_and_nothing_else(dirs: tuple[Path, Path, Path]) -> None:
    outputs, results, _ = dirs
    build_hostile_tree(outputs)
    mtime = int((outputs / "sub" / "a.txt").stat().st_mtime)

    assert run_filter(dirs) == 0

    with tarfile.open(results / "outputs.1.tar", "r:") as tar:
        members = tar.getmembers()
        contents = {
            member.name: extracted.read()
            for member in members
            if (extracted := tar.extractfile(member)) is not None and member.isfile()
        }
    assert [member.name for member in members] == [
        "empty",
        "sub",
        "sub/a.txt",
        "sub/deeper",
        "sub/deeper/b.txt",
        "sub2",
        "sub2/c.txt",
    ]
    assert all(member.isfile() or member.isdir() for member in members)
    assert all(member.uname == "" and member.gname == "" for member in members)
    assert all(member.uid == 0 and member.gid == 0 for member in members)
    assert contents == {
        "sub/a.txt": b"sub a",
        "sub/deeper/b.txt": b"deeper b",
        "sub2/c.txt": b"sub2 c",
    }
    assert next(m for m in members if m.name == "sub/a.txt").mtime == mtime


def test_no_host_file_reaches_the_results(dirs: tuple[Path, Path, Path]) -> None:
    passwd = Path("/etc/passwd").read_bytes()
    if not passwd:
        pytest.skip("/etc/passwd is empty here")
    outputs, results, _ = dirs
    build_hostile_tree(outputs)

    assert run_filter(dirs) == 0

    for path in results.iterdir():
        assert passwd not in path.read_bytes(), path.name


def test_empty_outputs_give_no_results(dirs: tuple[Path, Path, Path]) -> None:
    assert run_filter(dirs) == 0

    assert read_manifest(dirs) == {"results": [], "refused": []}
    assert list(dirs[1].iterdir()) == []


def test_only_files_give_no_tar(dirs: tuple[Path, Path, Path]) -> None:
    outputs, results, _ = dirs
    (outputs / "only.txt").write_text("only")

    assert run_filter(dirs) == 0

    assert [path.name for path in results.iterdir()] == ["only.txt"]


def test_the_tar_name_skips_every_taken_name(dirs: tuple[Path, Path, Path]) -> None:
    outputs, _, _ = dirs
    (outputs / "outputs.tar").write_text("one")
    (outputs / "outputs.1.tar").write_text("two")
    (outputs / "folder").mkdir()

    assert run_filter(dirs) == 0

    names = [result["filename"] for result in read_manifest(dirs)["results"]]
    assert names == ["outputs.1.tar", "outputs.tar", "outputs.2.tar"]


def test_an_unreadable_file_is_refused_and_the_rest_kept(
    dirs: tuple[Path, Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Root reads anything, so the permission error is simulated for two chosen files.
    outputs, results, _ = dirs
    (outputs / "ok.txt").write_text("ok")
    (outputs / "locked.txt").write_text("locked")
    (outputs / "sub").mkdir()
    (outputs / "sub" / "locked.txt").write_text("locked")
    (outputs / "sub" / "ok.txt").write_text("ok")
    real_open = os.open

    def fake_open(path: str, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.path.basename(path) == "locked.txt":
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)

    assert run_filter(dirs) == 0

    manifest = read_manifest(dirs)
    assert [result["filename"] for result in manifest["results"]] == ["ok.txt", "outputs.tar"]
    assert manifest["refused"] == [
        {"path": "locked.txt", "reason": "cannot be read: Permission denied"},
        {"path": "sub/locked.txt", "reason": "cannot be read: Permission denied"},
    ]
    assert sorted(path.name for path in results.iterdir()) == ["ok.txt", "outputs.tar"]
    with tarfile.open(results / "outputs.tar", "r:") as tar:
        assert tar.getnames() == ["sub", "sub/ok.txt"]
    assert "refused sub/locked.txt: cannot be read: Permission denied" in capsys.readouterr().out


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a file with mode 000")
def test_a_file_without_read_permission_is_refused(dirs: tuple[Path, Path, Path]) -> None:
    outputs, _, _ = dirs
    locked = outputs / "locked.txt"
    locked.write_text("locked")
    locked.chmod(0)

    assert run_filter(dirs) == 0

    assert read_manifest(dirs)["refused"] == [
        {"path": "locked.txt", "reason": "cannot be read: Permission denied"}
    ]


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("plain.txt", None),
        ("é" * 127 + "a", None),  # 255 bytes
        ("é" * 128, "name longer than 255 bytes"),
        ("a" * 256, "name longer than 255 bytes"),
        ("tab\there", "name contains a control character"),
        ("del\x7f", "name contains a control character"),
        ("line\u2028sep", "name contains a control character"),
        ("bad\udcffbyte", "name is not valid UTF-8"),
    ],
)
def test_name_problems(name: str, problem: str | None) -> None:
    assert entries.name_problem(name) == problem


def test_display_name_keeps_one_line() -> None:
    assert entries.display_name("a\nb\udcffc\u2028") == "a\\nb\\xffc\\u2028"


def test_an_unexpected_error_exits_1_with_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing"

    code = output_filter.main(
        ["--outputs", str(missing), "--results", str(tmp_path), "--manifest", str(tmp_path / "m")]
    )

    assert code == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().out


def test_runs_as_a_standalone_script(dirs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    # A copy of the helper modules outside the package, without site-packages (so without
    # localcompute): proves the filter imports nothing but its siblings.
    outputs, results, manifest = dirs
    build_hostile_tree(outputs)
    script = copy_helper(tmp_path, "filter.py")

    arguments = ["--outputs", str(outputs), "--results", str(results), "--manifest", str(manifest)]

    completed = subprocess.run(
        [sys.executable, *STANDALONE, str(script), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert len(read_manifest(dirs)["results"]) == 4


def test_archive_mode_packs_everything_under_outputs_and_refuses_the_same(
    dirs: tuple[Path, Path, Path],
) -> None:
    """Ocean Node's way (--archive): one outputs.tar of the whole folder, even when empty."""
    outputs, results, manifest = dirs
    (outputs / "top.txt").write_text("top\n")
    (outputs / "deep" / "er").mkdir(parents=True)
    (outputs / "deep" / "er" / "f.bin").write_bytes(BIG)
    (outputs / "escape").symlink_to("/etc/passwd")
    argv = ["--outputs", str(outputs), "--results", str(results), "--manifest", str(manifest)]
    assert output_filter.main([*argv, "--archive"]) == 0
    assert [p.name for p in results.iterdir()] == ["outputs.tar"]
    with tarfile.open(results / "outputs.tar") as tar:
        assert sorted(tar.getnames()) == [
            "outputs",
            "outputs/deep",
            "outputs/deep/er",
            "outputs/deep/er/f.bin",
            "outputs/top.txt",
        ]
        assert tar.extractfile("outputs/deep/er/f.bin").read() == BIG  # type: ignore[union-attr]
    report = read_manifest(dirs)
    assert [r["filename"] for r in report["results"]] == ["outputs.tar"]
    assert [r["path"] for r in report["refused"]] == ["escape"]

    shutil.rmtree(outputs)
    outputs.mkdir()
    (results / "outputs.tar").unlink()
    assert output_filter.main([*argv, "--archive"]) == 0
    with tarfile.open(results / "outputs.tar") as tar:
        assert tar.getnames() == ["outputs"]


def allocated(path: Path) -> int:
    return sum(p.lstat().st_blocks * 512 for p in [path, *path.rglob("*")])


@pytest.mark.parametrize("copy", [False, True], ids=["renamed", "copied"])
def test_outputs_are_moved_into_the_results_never_held_twice(
    dirs: tuple[Path, Path, Path], copy: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outputs lie under the job's quota, the results outside it: while the filter
    runs, the two together never hold more than the outputs and one chunk."""
    outputs, results, _ = dirs
    monkeypatch.setattr(entries, "MOVE_CHUNK", 64 * 1024)
    top, inner = os.urandom(1024 * 1024 + 5), os.urandom(700 * 1024)
    (outputs / "top.bin").write_bytes(top)
    (outputs / "dir").mkdir()
    (outputs / "dir" / "inner.bin").write_bytes(inner)
    before = allocated(outputs)
    peak = 0
    real_pwrite = os.pwrite

    def measured_pwrite(fd: int, data: bytes, offset: int) -> int:
        nonlocal peak
        written = real_pwrite(fd, data, offset)
        peak = max(peak, allocated(outputs) + allocated(results))
        return written

    monkeypatch.setattr(os, "pwrite", measured_pwrite)

    assert run_filter(dirs, copy=copy) == 0

    assert peak <= before + 64 * 1024 + 64 * 1024  # one chunk, and a tar's headers
    assert (results / "top.bin").read_bytes() == top
    with tarfile.open(results / "outputs.tar", "r:") as tar:
        extracted = tar.extractfile("dir/inner.bin")
        assert extracted is not None and extracted.read() == inner
    assert [p.name for p in outputs.rglob("*") if p.is_file()] == []  # moved, not copied
    for result in read_manifest(dirs)["results"]:
        assert result["sha256"] == sha256(results / result["filename"])


@pytest.mark.parametrize("copy", [False, True], ids=["renamed", "copied"])
def test_a_sparse_output_stays_sparse_in_the_results(
    dirs: tuple[Path, Path, Path], copy: bool
) -> None:
    """A file of holes is no more on the host after the filter than it was in the quota."""
    outputs, results, _ = dirs
    with (outputs / "sparse.bin").open("wb") as f:
        f.truncate(40 * 1024 * 1024)  # ten of the filter's 4 MiB chunks, nearly all holes
        f.seek(20 * 1024 * 1024)
        f.write(b"data")
    (outputs / "dir").mkdir()
    with (outputs / "dir" / "sparse.bin").open("wb") as f:
        f.truncate(16 * 1024 * 1024)

    assert run_filter(dirs, copy=copy) == 0

    assert (results / "sparse.bin").stat().st_size == 40 * 1024 * 1024
    assert allocated(results) < 8 * 1024 * 1024
    with (results / "sparse.bin").open("rb") as f:
        f.seek(20 * 1024 * 1024)
        assert f.read(4) == b"data"
    [entry] = [r for r in read_manifest(dirs)["results"] if r["filename"] == "sparse.bin"]
    assert entry["sha256"] == sha256(results / "sparse.bin")


def test_an_output_the_filter_may_not_write_is_copied_and_left(
    dirs: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs, results, _ = dirs
    (outputs / "kept.txt").write_text("kept")
    real_open = os.open

    def read_only_open(path: str, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_RDWR:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only_open)

    assert run_filter(dirs, copy=True) == 0

    assert (results / "kept.txt").read_text() == "kept"
    assert (outputs / "kept.txt").read_text() == "kept"


def test_a_moved_file_is_hashed_on_its_way_not_read_again(
    dirs: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where holes can be punched, the move goes first to last and feeds the digest: the
    result is never read back (one read of the bytes in all)."""
    outputs, results, _ = dirs
    data = os.urandom(3 * 1024 * 1024 + 17)
    (outputs / "out.bin").write_bytes(data)
    monkeypatch.setattr(entries, "MOVE_CHUNK", 1024 * 1024)

    def no_second_read(path: Path) -> tuple[int, str]:
        raise AssertionError(f"{path} was read again")

    monkeypatch.setattr(output_filter, "hash_file", no_second_read)
    assert run_filter(dirs, copy=True) == 0
    [entry] = read_manifest(dirs)["results"]
    assert entry["sha256"] == hashlib.sha256(data).hexdigest() == sha256(results / "out.bin")
    assert entry["filesize"] == len(data) and not (outputs / "out.bin").exists()


def test_where_holes_cannot_be_punched_the_move_goes_backwards_and_hashes_after(
    dirs: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs, results, _ = dirs
    data = os.urandom(2 * 1024 * 1024 + 3)
    (outputs / "out.bin").write_bytes(data)
    monkeypatch.setattr(entries, "MOVE_CHUNK", 512 * 1024)
    monkeypatch.setattr(entries, "_punch_hole", lambda fd, offset, length: False)
    cuts: list[int] = []
    real_ftruncate = os.ftruncate

    def watched(fd: int, length: int) -> None:
        cuts.append(length)
        real_ftruncate(fd, length)

    monkeypatch.setattr(os, "ftruncate", watched)
    assert run_filter(dirs, copy=True) == 0
    [entry] = read_manifest(dirs)["results"]
    assert entry["sha256"] == hashlib.sha256(data).hexdigest() == sha256(results / "out.bin")
    assert cuts[1:] == sorted(cuts[1:], reverse=True), "cut short from the end"


def test_a_large_file_that_fails_mid_move_is_refused_and_its_hashing_thread_ends(
    dirs: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file of several chunks is hashed on a thread of its own; a read that fails on
    the way refuses the file and leaves no thread behind."""
    outputs, _, _ = dirs
    (outputs / "out.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    monkeypatch.setattr(entries, "MOVE_CHUNK", 1024 * 1024)
    real_pread, reads = os.pread, []

    def failing(fd: int, length: int, offset: int) -> bytes:
        reads.append(offset)
        if len(reads) == 3:
            raise OSError(5, "Input/output error")
        return real_pread(fd, length, offset)

    monkeypatch.setattr(os, "pread", failing)
    threads = threading.active_count()
    assert run_filter(dirs, copy=True) == 0
    assert threading.active_count() == threads, "the hashing thread outlived the move"
    manifest = read_manifest(dirs)
    assert manifest["results"] == []
    assert [r["path"] for r in manifest["refused"]] == ["out.bin"], manifest


def test_an_output_on_the_results_file_system_is_renamed_never_copied(
    dirs: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where one file system holds outputs and results, a top-level file moves by a
    rename: the same file, no byte written, and its one read is for its sha256. It is
    left readable and not executable, whatever the algorithm made it."""
    outputs, results, _ = dirs
    data = os.urandom(3 * 1024 * 1024 + 11)
    (outputs / "out.bin").write_bytes(data)
    (outputs / "out.bin").chmod(0o4755)
    inode = (outputs / "out.bin").stat().st_ino

    def no_write(*args: object) -> int:
        raise AssertionError("a byte of a renamed output was written")

    monkeypatch.setattr(os, "pwrite", no_write)
    assert run_filter(dirs) == 0
    moved = (results / "out.bin").stat()
    assert moved.st_ino == inode and stat.S_IMODE(moved.st_mode) == 0o644
    assert not (outputs / "out.bin").exists()
    [entry] = read_manifest(dirs)["results"]
    assert entry == {
        "filename": "out.bin",
        "filesize": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def test_where_a_rename_crosses_file_systems_the_output_is_copied(
    dirs: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loop-mounted quota is a file system of its own: rename says EXDEV, and the file
    is moved by a copy instead, whole and hashed."""
    outputs, results, _ = dirs
    data = os.urandom(1024 * 1024 + 7)
    (outputs / "out.bin").write_bytes(data)

    def cross_device(src: object, dst: object, **kwargs: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "rename", cross_device)
    assert run_filter(dirs) == 0
    assert (results / "out.bin").read_bytes() == data and not (outputs / "out.bin").exists()
    [entry] = read_manifest(dirs)["results"]
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_renamed_output_that_cannot_be_hashed_is_refused_and_not_published(
    dirs: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs, results, _ = dirs
    (outputs / "bad.bin").write_bytes(b"x" * 4096)
    (outputs / "good.bin").write_bytes(b"good")
    real = hashlib.file_digest

    def failing(f: Any, name: str) -> Any:
        if os.fstat(f.fileno()).st_size == 4096:
            raise OSError(5, "Input/output error")
        return real(f, name)

    monkeypatch.setattr(hashlib, "file_digest", failing)
    assert run_filter(dirs) == 0
    manifest = read_manifest(dirs)
    assert [r["filename"] for r in manifest["results"]] == ["good.bin"]
    assert manifest["refused"] == [
        {"path": "bad.bin", "reason": "cannot be read: Input/output error"}
    ]
    assert sorted(p.name for p in results.iterdir()) == ["good.bin"]
