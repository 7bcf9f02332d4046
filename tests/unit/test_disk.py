"""The disk quota's host side, without root: measuring, finding a folder's mount, and the
xfs_quota commands an XFS project quota is made of (the mounts themselves are tested
on a real engine, in tests/docker/test_disk_quota.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from localcompute.runtime.local.disk import XfsQuota, mount_of
from localcompute.runtime.quota import WatchQuota, folder_size

MIB = 1024 * 1024


def test_a_folder_is_measured_as_allocated_without_following_links(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "two").write_bytes(os.urandom(2 * MIB))
    with (tmp_path / "sparse").open("wb") as sparse:
        sparse.truncate(100 * MIB)  # holds nothing
    (tmp_path / "usr").symlink_to("/usr")
    assert 2 * MIB <= folder_size(tmp_path) < 3 * MIB
    # A file is counted once under however many names (the filter renames outputs into
    # the results while a measure may walk both folders).
    os.link(tmp_path / "sub" / "two", tmp_path / "also-two")
    assert 2 * MIB <= folder_size(tmp_path) < 3 * MIB
    watch = WatchQuota()
    assert watch.full(tmp_path, MIB) and not watch.full(tmp_path, 4 * MIB)


def test_the_mount_that_holds_a_folder_is_the_longest_prefix(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
        "40 22 7:0 / /srv/lc rw,relatime - xfs /dev/loop0 rw,attr2,inode64,prjquota\n"
        "41 22 7:1 / /srv/lc\\040other rw - tmpfs tmpfs rw\n"
    )
    assert mount_of(Path("/srv/lc/var/jobs"), info) == (
        Path("/srv/lc"),
        "xfs",
        "rw,attr2,inode64,prjquota",
    )
    assert mount_of(Path("/srv/lc other/x"), info)[1] == "tmpfs"
    assert mount_of(Path("/home"), info) == (Path("/"), "ext4", "rw")


def test_an_xfs_project_quota_is_set_and_cleared_with_xfs_quota(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = tmp_path / "calls"
    fake = tmp_path / "bin" / "xfs_quota"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nprintf "%s|" "$@" >> {calls}\necho >> {calls}\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    quota = XfsQuota(tmp_path)
    folder = tmp_path / "jobs" / "j1" / "data"
    quota.attach(folder, 100 * MIB, "j1")
    assert folder.is_dir()
    project = XfsQuota.project("j1")
    assert project == XfsQuota.project("j1") != XfsQuota.project("j2")
    assert 1_000_000 <= project < 2**32
    quota.detach(folder, "j1")
    assert not folder.exists()
    lines = calls.read_text().splitlines()
    assert lines == [
        f"-x|-c|limit -p bhard=0 {project}|{tmp_path}|",  # attach clears what a crash left
        f"-x|-c|project -s -p '{folder}' {project}|{tmp_path}|",
        f"-x|-c|limit -p bhard={100 * MIB} {project}|{tmp_path}|",
        f"-x|-c|limit -p bhard=0 {project}|{tmp_path}|",
    ]
