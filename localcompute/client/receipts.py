"""A job's receipt checked by its consumer, offline: the client's side of
`localcompute verify` (core/receipt.py does the checking)."""

from __future__ import annotations

from pathlib import Path

from localcompute.core.receipt import Receipt, check_results, read_receipt


def verify_receipt(
    receipt: bytes | Path, *, provider: str | None = None, results: Path | None = None
) -> Receipt:
    """The receipt (its bytes, or its file) when its signature and shape hold, signed by
    `provider` when given, and with `results` (a folder of the downloaded results) the
    files it names. ReceiptError names the first thing that does not hold."""
    data = receipt.read_bytes() if isinstance(receipt, Path) else receipt
    checked = read_receipt(data, provider)
    if results is not None:
        check_results(checked, results)
    return checked
