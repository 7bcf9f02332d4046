"""Signatures and nonces, against the worked vectors of the provider reference."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from localcompute.core.errors import ConfigError, SignatureError
from localcompute.web.auth import ProviderKey, parse_nonce, recover, sign, verify

KEY = bytes.fromhex("11" * 32)
ADDRESS = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A"
DID = "did:op:" + "ab" * 32
VECTORS = [
    (
        f"{ADDRESS}{DID}2",
        "0x997d0a256839192f4681ef11db44064ceae9fb7b541b8d528a7fe9249396f8b5"
        "6f00d3d1e0d2336f716e1f76dd73c846c3101cc87434114dbabd3ae0ccb9d430",
    ),
    (
        f"{ADDRESS}a1b2c3{DID}4",
        "0x630ad7b81348ca20178960c4297001c7afa22f34f347d02ab26e15e4f9f2f1e4"
        "3bffb1486d250e6def3b041519308ca12b6e9182f842875eec89d4e90fe199c0",
    ),
    (
        f"{ADDRESS}a1b2c305",
        "0x86ab07f160aacd222a6cf690fb1ea822d067fb68346edf1d73315cf280a3aba6"
        "0a567a46b62b8d8141809bba08bbe82396daf31e206afdce805f86b12fbc74bd",
    ),
]


@pytest.mark.parametrize(("message", "rs"), VECTORS)
@pytest.mark.parametrize("v", ["00", "01", "1b", "1c"])
def test_reference_vectors_recover_with_every_v_form(message: str, rs: str, v: str) -> None:
    # Each vector's real v is 1 (ocean.py 01, ethers 1c); 0/1b recover another address.
    signer = recover(message, rs + v)
    if v in ("01", "1c"):
        assert signer == ADDRESS
        verify(message, rs + v, ADDRESS.lower())
    else:
        assert signer != ADDRESS


def test_we_sign_as_ocean_py_does() -> None:
    message, rs = VECTORS[0]
    assert sign(message, KEY) == rs + "01"


def test_refusals() -> None:
    message, rs = VECTORS[0]
    with pytest.raises(SignatureError, match="v byte"):
        recover(message, rs + "02")
    with pytest.raises(SignatureError, match="65 bytes"):
        recover(message, rs)
    with pytest.raises(SignatureError, match="not hex"):
        recover(message, "0xzz")
    with pytest.raises(SignatureError, match="Invalid signature"):
        verify(message.removesuffix("2"), rs + "01", ADDRESS)  # signed without the nonce
    with pytest.raises(SignatureError, match="Invalid signature"):
        verify(message, sign(message, bytes.fromhex("22" * 32)), ADDRESS)  # another key


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (2, Decimal(2)),
        ("2", Decimal(2)),
        (2.0, Decimal("2.0")),
        ("1700000000123456789", Decimal(1700000000123456789)),
    ],
)
def test_nonces_compare_as_decimals(raw: object, value: Decimal) -> None:
    assert parse_nonce(raw) == value


@pytest.mark.parametrize("raw", [None, True, "abc", "NaN", "Infinity", ""])
def test_non_numbers_are_not_nonces(raw: object) -> None:
    with pytest.raises(SignatureError):
        parse_nonce(raw)


def test_provider_key_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    first = ProviderKey.load("", "", tmp_path)
    assert (tmp_path / "provider.key").stat().st_mode & 0o777 == 0o600
    assert ProviderKey.load("", "", tmp_path).address == first.address
    assert ProviderKey.load("0x" + "11" * 32, "", tmp_path).address == ADDRESS
    with pytest.raises(ConfigError, match="32 bytes"):
        ProviderKey.load("0x1234", "", tmp_path)
