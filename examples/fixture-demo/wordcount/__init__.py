"""The algorithm of this project, and how to run it as an Ocean compute job."""

from __future__ import annotations

from pathlib import Path

ALGORITHM = Path(__file__).with_name("algorithm.sh")
# What Ocean will run it in: any image with a POSIX shell. (The tests use the tiny
# busybox image that localcompute's own test set-up makes without a registry.)
CONTAINER = {"image": "localcompute/busybox", "tag": "latest", "entrypoint": "sh $ALGO"}


def rawcode() -> str:
    return ALGORITHM.read_text()
