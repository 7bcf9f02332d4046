"""The node dialect's signatures (the reference's §3.3 vectors) and its auth tokens."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import jwt
import pytest

from localcompute.core.errors import SignatureError, TokenError
from localcompute.web.auth import NODE_DIGESTS, recover, verify
from localcompute.web.tokens import SECRET_FILE, TokenIssuer

ADDRESS = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A"
# (nonce, command, signature) exactly as ocean.js 8.6.2 put them on the wire.
WIRE = [
    (
        "1",
        "freeStartCompute",
        "0xc18aead0a002d69861a5b9f5c16e301ec7fd0f5793b58e872bd48dc27b4505972765b9b0978717e1"
        "36e972ce98d6eb1ac17feaa3a8cffdf67d1781c0622c41c01c",
    ),
    (
        "2",
        "getComputeResult",
        "0x507d640f24deab2ac6b0cb192e5873559e8a77603d9447cbc751ea3f6bfda1010945bf94046aaba2"
        "7f4fd2f5d33eb16a112803e139e85853e8f28411cdebeb171b",
    ),
    # keccak of this message starts with a zero byte, which ocean.js 8.6.2 drops before
    # signing (ethers.toBeArray): captured from the real client against this server.
    (
        "2",
        "getComputeStreamableLogs",
        "0x6ecb10433d52761218e4fdd9feb70fb24a083bf4beabe734e4d1b6ca220c7d1b00c0fcdb18149d"
        "281c1e4d6b51541265c4281202678a0fc33c1f20498fb1242d1b",
    ),
]


@pytest.mark.parametrize(("nonce", "command", "signature"), WIRE)
def test_the_wire_signatures_of_ocean_js_8_verify(nonce: str, command: str, signature: str) -> None:
    verify(f"{ADDRESS}{nonce}{command}", signature, ADDRESS, digests=NODE_DIGESTS)
    # The address is part of the message as sent: lower-cased, it is another message.
    with pytest.raises(SignatureError):
        verify(f"{ADDRESS.lower()}{nonce}{command}", signature, ADDRESS)
    with pytest.raises(SignatureError):
        verify(f"{ADDRESS}{nonce}stopCompute", signature, ADDRESS, digests=NODE_DIGESTS)


def test_read_as_hex_text_the_vector_recovers_the_reference_s_other_address() -> None:
    from localcompute.web.auth import hex_text_hash

    nonce, command, signature = WIRE[0]
    signer = recover(f"{ADDRESS}{nonce}{command}", signature, hex_text_hash)
    assert signer == "0xBC9A7226d2732A99368E02052c023E1E12204a27"


def test_the_token_secret_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    first = TokenIssuer.load(tmp_path, 60)
    mode = stat.S_IMODE(os.stat(tmp_path / SECRET_FILE).st_mode)
    assert mode == 0o600
    token = first.issue(ADDRESS, "3")
    again = TokenIssuer.load(tmp_path, 60)  # a restart reads the same secret
    assert again.check(token).address == ADDRESS


def test_a_token_carries_the_address_an_id_and_an_end(tmp_path: Path) -> None:
    issuer = TokenIssuer.load(tmp_path, 60)
    token = issuer.issue(ADDRESS, "3")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["address"] == ADDRESS and claims["nonce"] == "3"
    assert claims["exp"] - claims["iat"] == 60
    checked = issuer.check(token)
    assert checked.token_id == claims["jti"] and checked.expires_at == claims["exp"]
    forever = TokenIssuer.load(tmp_path, 0).issue(ADDRESS, "4")
    assert "exp" not in jwt.decode(forever, options={"verify_signature": False})
    asked = issuer.issue(ADDRESS, "5", valid_until_ms=int(time.time() * 1000) + 5000)
    assert issuer.check(asked).expires_at is not None


def test_expired_foreign_and_unsigned_tokens_are_refused(tmp_path: Path) -> None:
    issuer = TokenIssuer.load(tmp_path, 60)
    expired = issuer.issue(ADDRESS, "1", valid_until_ms=int(time.time() * 1000) - 1000)
    with pytest.raises(TokenError, match="expired"):
        issuer.check(expired)
    foreign = TokenIssuer(b"x" * 32, 60).issue(ADDRESS, "1")
    with pytest.raises(TokenError):
        issuer.check(foreign)
    unsigned = jwt.encode({"address": ADDRESS, "jti": "a", "iat": 1}, None, algorithm="none")
    with pytest.raises(TokenError):
        issuer.check(unsigned)
    without_id = jwt.encode(
        {"address": ADDRESS, "iat": 1},
        bytes.fromhex((tmp_path / SECRET_FILE).read_text().strip().removeprefix("0x")),
        algorithm="HS256",
    )
    with pytest.raises(TokenError):
        issuer.check(without_id)
