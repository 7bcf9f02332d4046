"""DSSE envelopes (github.com/secure-systems-lab/dsse), signed with Ethereum keys.

The signature is EIP-191 personal_sign over DSSE's pre-authentication encoding, so any
Ethereum library checks it: eth_account's `Account.recover_message(encode_defunct(
primitive=pae), signature=sig)`, ethers' `verifyMessage(pae, sig)`. The signature's
`keyid` is the signer's address. Nothing here needs the network.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from localcompute.core.errors import ReceiptError, SignatureError
from localcompute.core.signing import Key, recover_data

IN_TOTO_PAYLOAD = "application/vnd.in-toto+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1's pre-authentication encoding: what is signed, not the payload alone."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def seal(payload: bytes, key: Key, payload_type: str = IN_TOTO_PAYLOAD) -> dict[str, Any]:
    """The envelope of `payload`, signed by `key`."""
    signature = key.personal_sign(pae(payload_type, payload))
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [{"keyid": key.address, "sig": base64.b64encode(signature).decode("ascii")}],
    }


def open_envelope(data: bytes, payload_type: str = IN_TOTO_PAYLOAD) -> tuple[bytes, str]:
    """The payload of a signed envelope and the address that signed it; ReceiptError
    naming the first thing that does not hold."""
    try:
        envelope = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ReceiptError(f"not a DSSE envelope: not JSON ({e})") from e
    if not isinstance(envelope, dict):
        raise ReceiptError("not a DSSE envelope: not a JSON object")
    if envelope.get("payloadType") != payload_type:
        raise ReceiptError(f"payloadType is {envelope.get('payloadType')!r}, not {payload_type!r}")
    payload = _base64(envelope.get("payload"), "payload")
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise ReceiptError("the envelope carries no signature")
    if len(signatures) != 1 or not isinstance(signatures[0], dict):
        raise ReceiptError("the envelope must carry exactly one signature")
    raw = _base64(signatures[0].get("sig"), "signature")
    try:
        signer = recover_data(pae(payload_type, payload), raw)
    except SignatureError as e:
        raise ReceiptError(f"the signature does not hold: {e.message}") from e
    keyid = signatures[0].get("keyid")
    if keyid and str(keyid).lower() != signer.lower():
        # A changed payload recovers to some other address: this is how tampering shows.
        raise ReceiptError(
            f"the signature does not match the payload: it recovers to {signer}, "
            f"not to its keyid {keyid} (the payload or the signature was changed)"
        )
    return payload, signer


def _base64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise ReceiptError(f"the envelope's {what} is missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ReceiptError(f"the envelope's {what} is not base64") from e
