"""The nonce rule, in one place: a signed call's nonce is accepted only above the last one
accepted from its address (each dialect counts its own: see web/node_auth.nonce_account).
The store applies it in the transaction that records the call; a dialect may ask it
early (engine.check_nonce), so that a stale nonce is refused before anything else."""

from __future__ import annotations

from decimal import Decimal

from localcompute.core.errors import NonceError


def refuse_stale(last: Decimal, nonce: Decimal) -> None:
    if nonce <= last:
        raise NonceError(
            f"Invalid signature expected nonce ({last}) > current nonce ({nonce}): "
            "a nonce must be greater than the last one accepted from this address"
        )
