"""`localcompute config example`: the example configuration, every key with its default.

A wheel carries the repository's config.example.toml inside the package (setup.py
copies it in at build time); a checkout, or an editable install of one, reads the
file at the repository's root. Either way it is the one file `scripts/run serve` uses.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from localcompute.core.errors import ConfigError

EXAMPLE_NAME = "config.example.toml"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
# The packaged copy first: in a wheel the package's parent is site-packages.
EXAMPLE_PLACES = (PACKAGE_DIR / EXAMPLE_NAME, PACKAGE_DIR.parent / EXAMPLE_NAME)


def add_parser(sub: Any) -> None:
    config = sub.add_parser("config", help="configuration files", description=__doc__)
    actions = config.add_subparsers(dest="config_command", required=True)
    actions.add_parser(
        "example",
        help="print the example configuration (every key with its default)",
        description="Print config.example.toml: save it, edit it, pass it with --config. "
        "Paths in it (data_dir) are relative to the folder the file is saved in.",
    )


def example_text() -> str:
    """The text of config.example.toml, wherever this installation keeps it."""
    for path in EXAMPLE_PLACES:
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise ConfigError(
        f"{EXAMPLE_NAME} is not installed with this package (looked in "
        + " and ".join(str(p.parent) for p in EXAMPLE_PLACES)
        + "): reinstall localcompute from a wheel built by `pip wheel` or `python -m build`"
    )


def main(args: argparse.Namespace) -> int:
    try:
        text = example_text()
    except ConfigError as e:
        print(f"localcompute config: {e.message}", file=sys.stderr)
        return 2
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # `localcompute config example | head`: the reader has all it wanted. Point
        # stdout at /dev/null so that the interpreter's own flush at exit is quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
