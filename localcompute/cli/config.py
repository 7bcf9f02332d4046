"""`localcompute config example`: the example configuration, every key with its default.

A wheel carries the repository's config.example.toml inside the package, with the
worked example's dataset and algorithm beside it (setup.py copies them in at build
time); a checkout, or an editable install of one, reads them at the repository's root.
Either way they are the files `scripts/run serve` uses. The example serves a dataset
whose path is relative to the configuration, so `--into DIR` writes the dataset and
the algorithm beside the file: printed alone, the configuration names a file that is
not there, and the server refuses to start on it.
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
# The worked example's files, relative to the folder of config.example.toml (setup.py
# packages the same list).
EXAMPLE_FILES = ("examples/data/sales.csv", "examples/algorithms/sales_by_region.py")
SAVED_NAME = "config.toml"


def add_parser(sub: Any) -> None:
    config = sub.add_parser("config", help="configuration files", description=__doc__)
    actions = config.add_subparsers(dest="config_command", required=True)
    example = actions.add_parser(
        "example",
        help="print the example configuration (every key with its default)",
        description="Print config.example.toml: save it, edit it, pass it with --config. "
        "Paths in it (data_dir, the datasets' files) are relative to the folder the file "
        "is saved in.",
    )
    example.add_argument(
        "--into",
        type=Path,
        metavar="DIR",
        help=f"write DIR/{SAVED_NAME} and the worked example's dataset and algorithm "
        "beside it, ready for `localcompute serve --config DIR/config.toml`",
    )


def example_text() -> str:
    """The text of config.example.toml, wherever this installation keeps it."""
    return example_path().read_text(encoding="utf-8")


def example_path() -> Path:
    """config.example.toml, wherever this installation keeps it."""
    for path in EXAMPLE_PLACES:
        if path.is_file():
            return path
    raise ConfigError(
        f"{EXAMPLE_NAME} is not installed with this package (looked in "
        + " and ".join(str(p.parent) for p in EXAMPLE_PLACES)
        + "): reinstall localcompute from a wheel built by `pip wheel` or `python -m build`"
    )


def write_example(into: Path) -> Path:
    """Write the example configuration and its worked example's files into `into`.

    Nothing is overwritten: a file already there is refused before anything is written.
    """
    source = example_path()
    copies = [(source, into / SAVED_NAME)]
    copies += [(source.parent / name, into / name) for name in EXAMPLE_FILES]
    missing = [str(src) for src, _ in copies if not src.is_file()]
    if missing:
        raise ConfigError(f"the worked example is not installed with this package: {missing[0]}")
    present = [str(dst) for _, dst in copies if dst.exists()]
    if present:
        raise ConfigError(f"{present[0]} exists already: give --into an empty or new folder")
    for src, dst in copies:
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())
    return into / SAVED_NAME


def main(args: argparse.Namespace) -> int:
    try:
        if args.into is not None:
            saved = write_example(args.into)
            print(
                f"wrote {saved} and the worked example beside it: "
                f"localcompute serve --config {saved}"
            )
            return 0
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
