"""Auth tokens of the node dialect: JWTs whose payload carries the owner's address.

ocean.js 8 decodes the token without verifying it and uses its `address` claim as
the consumerAddress of every later call, so the claim is the checksummed address.
Tokens are signed with HS256 and a secret made once in data_dir (mode 0600); they
are not stored. An invalidated token's id is (see the store's revoked_tokens).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from localcompute.core.errors import ConfigError, TokenError
from localcompute.core.signing import secret_file

ALGORITHM = "HS256"
SECRET_FILE = "node-token.secret"


@dataclass(frozen=True)
class Token:
    """What a valid token says."""

    token_id: str
    address: str
    expires_at: float | None  # epoch seconds; None: until invalidated


class TokenIssuer:
    """Makes and checks the tokens of this server."""

    def __init__(self, secret: bytes, lifetime: int) -> None:
        self._secret = secret
        self._lifetime = lifetime

    def __repr__(self) -> str:
        return f"<TokenIssuer lifetime={self._lifetime}s>"

    @classmethod
    def load(cls, data_dir: Path, lifetime: int) -> TokenIssuer:
        text = secret_file(data_dir / SECRET_FILE, "the auth token secret")
        try:
            secret = bytes.fromhex(text.removeprefix("0x"))
        except ValueError as e:
            raise ConfigError(f"{data_dir / SECRET_FILE}: the token secret is not hex") from e
        if len(secret) < 32:
            raise ConfigError(f"{data_dir / SECRET_FILE}: the token secret is under 32 bytes")
        return cls(secret, lifetime)

    def issue(self, address: str, nonce: str, valid_until_ms: int | None = None) -> str:
        """A token for `address`, valid until the client's end, else for the lifetime."""
        now = time.time()
        claims: dict[str, Any] = {
            "address": address,
            "nonce": nonce,
            "createdAt": int(now * 1000),
            "iat": int(now),
            "jti": secrets.token_hex(16),
        }
        if valid_until_ms is not None:
            claims["exp"] = valid_until_ms // 1000
        elif self._lifetime:
            claims["exp"] = int(now) + self._lifetime
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def check(self, token: str) -> Token:
        """What `token` says, if this server made it and it has not expired.

        Whether it was invalidated is the store's to say, in the caller's transaction.
        """
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["address", "jti", "iat"]},
            )
        except jwt.ExpiredSignatureError as e:
            raise TokenError("Invalid token: it has expired") from e
        except jwt.InvalidTokenError as e:
            raise TokenError(f"Invalid token: {e}") from e
        address, token_id = claims["address"], claims["jti"]
        if not isinstance(address, str) or not isinstance(token_id, str):
            raise TokenError("Invalid token: its address or id is not a string")
        expires = claims.get("exp")
        return Token(token_id, address, float(expires) if expires is not None else None)
