"""Who signed a request, and whether its nonce is new: the web layer's side of signing.

The signatures themselves are core's (localcompute.core.signing), shared with the
client; here are how a request's nonce reads and the provider's own key.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path

from localcompute.core.errors import SignatureError
from localcompute.core.signing import (
    NODE_DIGESTS,
    Key,
    hex_text_hash,
    message_hash,
    provider_key,
    recover,
    secret_file,
    sign,
    verify,
    zero_stripped_hash,
)

__all__ = [
    "NODE_DIGESTS",
    "ProviderKey",
    "hex_text_hash",
    "message_hash",
    "nonce_text",
    "parse_nonce",
    "recover",
    "secret_file",
    "sign",
    "verify",
    "zero_stripped_hash",
]


def parse_nonce(value: object) -> Decimal:
    """A nonce as a decimal number, whatever its JSON type; SignatureError if it is none."""
    if isinstance(value, bool) or value is None:
        raise SignatureError("The nonce must be a number.")
    try:
        nonce = Decimal(str(value).strip())
    except InvalidOperation as e:
        raise SignatureError("The nonce must be a number.") from e
    if not nonce.is_finite():
        raise SignatureError("The nonce must be a number.")
    return nonce


def nonce_text(value: object) -> str:
    """How the nonce appears in a signed message: as the client sent it."""
    return str(value)


class ProviderKey(Key):
    """The provider's key: answers GET / with its address, signs what the provider signs."""

    @classmethod
    def load(cls, private_key: str, key_file: str, data_dir: Path) -> ProviderKey:
        """From the setting, else from the file, else one made once in data_dir (mode 0600)."""
        return cls(provider_key(private_key, key_file, data_dir))
