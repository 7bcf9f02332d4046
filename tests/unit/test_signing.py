"""Our signatures, addresses and recoveries are eth-account's and eth-keys', byte for byte.

localcompute.core.signing uses coincurve and pycryptodome's keccak directly, for the
cost of importing eth-keys and eth-utils; these tests hold every output against those
libraries on keys and messages drawn from a fixed seed.
"""

from __future__ import annotations

import random

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys.backends.coincurve import CoinCurveECCBackend
from eth_keys.main import KeyAPI
from eth_utils.crypto import keccak as eth_keccak

from localcompute.core.errors import SignatureError
from localcompute.core.signing import (
    NODE_DIGESTS,
    Key,
    keccak,
    message_hash,
    recover,
    recover_data,
    sign,
)

KEYS = KeyAPI(CoinCurveECCBackend)
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
DRAWS = random.Random(29)
# A key of each shape worth having: the smallest, the largest, and drawn ones.
PRIVATE_KEYS = [
    (1).to_bytes(32, "big"),
    (SECP256K1_N - 1).to_bytes(32, "big"),
    *(DRAWS.randbytes(32) for _ in range(24)),
]
MESSAGES = [
    "",
    "0xabc",
    "did:op:" + "ab" * 32 + "7",
    "ünïcode ✓",
    *(str(DRAWS.random()) for _ in range(8)),
]


@pytest.mark.parametrize("private", PRIVATE_KEYS, ids=lambda k: k.hex()[:8])
def test_address_and_public_key_as_eth_keys_make_them(private: bytes) -> None:
    theirs = KEYS.PrivateKey(private).public_key
    key = Key(private)
    assert key.to_bytes() == private
    assert key.address == theirs.to_checksum_address() == Account.from_key(private).address
    assert key.public_key == "0x" + theirs.to_compressed_bytes().hex()


@pytest.mark.parametrize("private", PRIVATE_KEYS, ids=lambda k: k.hex()[:8])
def test_signatures_are_eth_keys_and_eth_accounts_bytes(private: bytes) -> None:
    key = Key(private)
    for message in MESSAGES:
        expected = KEYS.ecdsa_sign(message_hash(message), KEYS.PrivateKey(private)).to_bytes()
        assert sign(message, private) == key.sign(message) == "0x" + expected.hex()
        assert recover(message, key.sign(message)) == key.address
        data = message.encode()
        wallet = Account.sign_message(encode_defunct(primitive=data), private).signature
        assert key.personal_sign(data) == bytes(wallet)
        assert recover_data(data, key.personal_sign(data)) == key.address


def test_keccak_is_ethereums() -> None:
    for length in (0, 1, 31, 32, 135, 136, 137, 1000):
        data = DRAWS.randbytes(length)
        assert keccak(data) == eth_keccak(data)
    assert keccak(b"").hex().startswith("c5d2460186f7233c")  # not SHA3-256's a7ffc6f8


def test_every_node_digest_recovers_the_signer() -> None:
    key = Key(PRIVATE_KEYS[5])
    for message in MESSAGES:
        for digest in NODE_DIGESTS:
            raw = KEYS.ecdsa_sign(digest(message), KEYS.PrivateKey(PRIVATE_KEYS[5])).to_bytes()
            assert recover(message, raw.hex(), digest) == key.address


@pytest.mark.parametrize(
    "rs",
    [bytes(64), b"\xff" * 64, bytes(32) + b"\x01" * 32, b"\x01" * 32 + bytes(32)],
    ids=["zero", "all-ones", "r-zero", "s-zero"],
)
def test_garbage_r_and_s_recover_no_address(rs: bytes) -> None:
    with pytest.raises(SignatureError, match="no address"):
        recover("m", (rs + b"\x1b").hex())


@pytest.mark.parametrize("private", [bytes(32), b"\xff" * 32, bytes(31)], ids=["0", "n+", "31"])
def test_a_key_that_is_none_is_refused(private: bytes) -> None:
    with pytest.raises(ValueError):
        Key(private)
