"""A container's output into a log file: capped, and never written through a planted link."""

from __future__ import annotations

import os
from pathlib import Path

from localcompute.runtime.logfile import TRUNCATION_MARKER, write_capped


def test_output_over_the_limit_is_cut_and_says_so(tmp_path: Path) -> None:
    log = tmp_path / "algorithm.log"

    written = write_capped([b"abc", b"defgh", b"ijk"], log, limit=5, append=False)

    assert written == 5
    assert log.read_bytes() == b"abcde" + TRUNCATION_MARKER % 5


def test_a_link_planted_at_the_log_is_replaced_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "host-file"
    target.write_bytes(b"precious")
    log = tmp_path / "algorithm.log"
    log.symlink_to(target)

    write_capped([b"out"], log, limit=100, append=True)

    assert target.read_bytes() == b"precious"
    assert not log.is_symlink() and log.read_bytes() == b"out"


def test_a_fifo_planted_at_the_log_is_replaced(tmp_path: Path) -> None:
    log = tmp_path / "filter.log"
    os.mkfifo(log)

    write_capped([b"out"], log, limit=100, append=False)

    assert log.is_file() and log.read_bytes() == b"out"
