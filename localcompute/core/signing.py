"""Ocean's signatures and the keys that make them: for the server and its clients alike.

Ocean's clients sign keccak256 of the UTF-8 message with EIP-191 over that 32-byte
hash (personal_sign of the hash, not of the text). `v` may be 0, 1, 27 or 28.
Signing and recovery are coincurve's (libsecp256k1, about 0.1 ms a signature), keccak is
pycryptodome's, and the checksummed address is EIP-55 written out below: eth-keys and
eth-utils made the same bytes the same way, but importing them cost every command
about 0.1-0.2 s (pydantic, toolz, importlib.metadata), on `localcompute run`'s path too.
tests/unit/test_signing.py holds the result against eth-account.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self

from coincurve import PrivateKey, PublicKey
from Crypto.Hash import keccak as _keccak

from localcompute.core.errors import ConfigError, SignatureError

_EIP191_PREFIX = b"\x19Ethereum Signed Message:\n32"


def keccak(data: bytes) -> bytes:
    """Keccak-256 as Ethereum has it (not NIST's SHA3-256, whose padding differs)."""
    return bytes(_keccak.new(data=data, digest_bits=256).digest())


def checksum_address(public: PublicKey) -> str:
    """EIP-55: the last 20 bytes of keccak(x‖y), hex, each letter upper case where the
    same nibble of keccak(that lower-case hex) is 8 or more."""
    address = keccak(public.format(compressed=False)[1:])[-20:].hex()
    nibbles = keccak(address.encode("ascii")).hex()
    return "0x" + "".join(
        c.upper() if int(n, 16) >= 8 else c for c, n in zip(address, nibbles[:40], strict=True)
    )


def message_hash(message: str) -> bytes:
    """The digest a client signs for `message`."""
    return keccak(_EIP191_PREFIX + keccak(message.encode("utf-8")))


def _eip191(payload: bytes) -> bytes:
    return keccak(b"\x19Ethereum Signed Message:\n" + str(len(payload)).encode() + payload)


def zero_stripped_hash(message: str) -> bytes:
    """The digest ocean.js 8 really signs: it turns keccak(message) into bytes with
    ethers.toBeArray, which drops leading zero bytes, so one hash in 256 is signed as
    31 bytes or fewer (Ocean Node verifies through the same toBeArray)."""
    return _eip191(keccak(message.encode("utf-8")).lstrip(b"\0"))


def hex_text_hash(message: str) -> bytes:
    """The digest when keccak(message) was signed as the 66-character text "0x…".

    Ocean Node accepts this form besides the raw 32 bytes; some wallets sign so.
    """
    return _eip191(("0x" + keccak(message.encode("utf-8")).hex()).encode("ascii"))


NODE_DIGESTS = (message_hash, zero_stripped_hash, hex_text_hash)
"""The forms of a node-dialect signature: the 32 bytes, ocean.js 8's stripped bytes, hex text."""


def personal_sign_hash(data: bytes) -> bytes:
    """The digest EIP-191's personal_sign signs for `data` (as eth_account's
    encode_defunct(primitive=data) and ethers.signMessage(bytes) make it)."""
    return _eip191(data)


def recover_data(data: bytes, signature: bytes) -> str:
    """The checksummed address whose personal_sign of `data` is `signature` (65 bytes)."""
    return recover_digest(personal_sign_hash(data), signature)


def recover_digest(digest: bytes, raw: bytes) -> str:
    """The checksummed address that signed the 32-byte `digest`; SignatureError if none."""
    if len(raw) != 65:
        raise SignatureError("the signature must be 65 bytes: r, s and v")
    v = raw[64] - 27 if raw[64] in (27, 28) else raw[64]
    if v not in (0, 1):
        raise SignatureError(f"the signature's v byte must be 0, 1, 27 or 28, not {raw[64]}")
    try:
        public = PublicKey.from_signature_and_message(raw[:64] + bytes([v]), digest, hasher=None)
    except Exception as e:  # coincurve raises several kinds for garbage r or s
        raise SignatureError("no address can be recovered from the signature") from e
    return checksum_address(public)


def recover(message: str, signature: str, digest: Callable[[str], bytes] = message_hash) -> str:
    """The checksummed address that signed `message`; SignatureError when none can be found."""
    try:
        raw = bytes.fromhex(signature.removeprefix("0x"))
    except ValueError as e:
        raise SignatureError("the signature is not hex") from e
    return recover_digest(digest(message), raw)


def verify(
    message: str,
    signature: str,
    address: str,
    digests: Sequence[Callable[[str], bytes]] = (message_hash,),
) -> None:
    """Raise SignatureError unless `address` signed `message` in one of the `digests`
    forms (addresses compare case-blind)."""
    for digest in digests:
        signer = recover(message, signature, digest)
        if signer.lower() == address.lower():
            return
    signer = recover(message, signature)
    if signer.lower() != address.lower():
        raise SignatureError(
            f"Invalid signature {signature} for ethereum address {address}, "
            f"message {message}. Got {signer}"
        )


def sign(message: str, private_key: bytes) -> str:
    """Sign as ocean.py does (v = 0 or 1): for tests and for provider-to-operator calls."""
    return "0x" + Key(private_key).sign_digest(message_hash(message)).hex()


class Key:
    """A secp256k1 key: its checksummed address, and the signatures it makes."""

    def __init__(self, private_key: bytes) -> None:
        if len(private_key) != 32:
            raise ValueError("a secp256k1 private key is 32 bytes")
        self._key = PrivateKey(private_key)  # ValueError unless 1 ≤ key < the curve's order
        self._address: str | None = None

    @property
    def address(self) -> str:
        if self._address is None:  # asked for with every signed request: made once
            self._address = checksum_address(self._key.public_key)
        return self._address

    def to_bytes(self) -> bytes:
        """The 32 bytes of the private key (to hand the same key to another signer)."""
        return bytes(self._key.secret)

    def sign(self, message: str) -> str:
        return "0x" + self.sign_digest(message_hash(message)).hex()

    def sign_digest(self, digest: bytes) -> bytes:
        """r, s and v (0 or 1) of the 32-byte `digest`; libsecp256k1's s is always low."""
        return bytes(self._key.sign_recoverable(digest, hasher=None))

    def personal_sign(self, data: bytes) -> bytes:
        """EIP-191 personal_sign of `data`: r, s and v (27 or 28), as wallets make it."""
        raw = self.sign_digest(personal_sign_hash(data))
        return raw[:64] + bytes([raw[64] + 27])

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.address}>"

    @property
    def public_key(self) -> str:
        """The compressed secp256k1 public key, hex (Ocean Node's nodePublicKey)."""
        return "0x" + self._key.public_key.format(compressed=True).hex()

    @classmethod
    def random(cls) -> Self:
        """A key that lives as long as this object: nothing is stored."""
        return cls(secrets.token_bytes(32))

    @classmethod
    def from_hex(cls, text: str, source: str) -> Self:
        return cls(parse_key(text, source))

    @classmethod
    def made_once(cls, path: Path, what: str) -> Self:
        """The key kept in `path`, made on first use with mode 0600."""
        return cls.from_hex(secret_file(path, what), str(path))


def provider_key(private_key: str, key_file: str, data_dir: Path) -> bytes:
    """The provider's key: from [provider] private_key, else from its key file, else
    the one made once in data_dir (mode 0600)."""
    if private_key:
        return parse_key(private_key, "[provider] private_key")
    if key_file:
        path = Path(key_file)
        try:
            text = path.read_text().strip()
        except OSError as e:
            raise ConfigError(f"cannot read the provider key file {path}: {e}") from e
        return parse_key(text, str(path))
    made = data_dir / "provider.key"
    return parse_key(secret_file(made, "the provider key"), str(made))


def secret_file(path: Path, what: str) -> str:
    """The secret kept in `path`: 32 random bytes as hex, made once with mode 0600."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: read theirs
        else:
            with os.fdopen(fd, "w") as f:
                f.write("0x" + secrets.token_bytes(32).hex() + "\n")
    try:
        return path.read_text().strip()
    except OSError as e:
        raise ConfigError(f"cannot read {what} from {path}: {e}") from e


def parse_key(text: str, source: str) -> bytes:
    try:
        raw = bytes.fromhex(text.removeprefix("0x"))
    except ValueError as e:
        raise ConfigError(f"{source}: the provider key is not hex") from e
    if len(raw) != 32:
        raise ConfigError(f"{source}: the provider key must be 32 bytes")
    return raw
