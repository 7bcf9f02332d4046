"""`localcompute verify RECEIPT`: does a job's receipt hold? Offline, with no server.

It checks the envelope's signature and who made it (against --provider, or it says who),
the statement's shape, and with --results that the downloaded results are the ones the
receipt names. It prints what ran, on what, and when; exit 0 when all holds, 1 with the
first thing that does not, in one line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from localcompute.cli.exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from localcompute.core.errors import ReceiptError
from localcompute.core.receipt import check_results, read_receipt


def add_parser(sub: Any) -> None:
    verify = sub.add_parser(
        "verify",
        help="check a job's signed receipt (offline), and its results against it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("receipt", type=Path, help="the job's receipt.json")
    verify.add_argument(
        "--results", type=Path, metavar="DIR", help="a folder of the job's downloaded results"
    )
    verify.add_argument(
        "--provider", metavar="0x…", help="the provider's address (GET / says it): the signer"
    )


def main(args: argparse.Namespace) -> int:
    try:
        data = args.receipt.read_bytes()
    except OSError as e:
        print(f"verify: cannot read {args.receipt}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        receipt = read_receipt(data, args.provider)
        matched = check_results(receipt, args.results) if args.results is not None else ""
    except ReceiptError as e:
        print(f"verify: {args.receipt}: REFUSED: {e.message}", file=sys.stderr)
        return EXIT_FAILED
    who = "the provider given" if args.provider else "check it is your provider's: GET /"
    print(f"{args.receipt}: signature holds, signed by {receipt.signer} ({who})")
    for line in receipt.summary():
        print(f"  {line}")
    if matched:
        print(f"  {matched}")
    return EXIT_OK
