"""Who is calling, in Ocean Node's dialect: a signature over address + nonce + command
(ocean.js 8), else an auth token; and the token handlers (create, invalidate).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from decimal import Decimal

from aiohttp import web

from localcompute.core.errors import (
    RefusedError,
    RequestValidationError,
    SignatureError,
    TokenError,
)
from localcompute.core.models import Preconditions
from localcompute.web import auth, throttle
from localcompute.web.context import ENGINE, TOKENS
from localcompute.web.node_requests import CreateTokenRequest, InvalidateTokenRequest, Signed
from localcompute.web.params import parse, read_params

_DIGITS = re.compile(r"^[0-9]{1,78}$")
_NO_TOKEN = ("", "undefined", "null")


def nonce_account(address: str) -> str:
    """The node dialect's own nonce counter for `address`, apart from the classic API's.

    ocean.js 8 signs the stored nonce + 1 and accepts only digits; ocean.py signs
    timestamps with a fraction. Sharing one counter would let a classic client's
    "1700000000000.5" break every later node call of the same key.
    """
    return f"node:{address.lower()}"


# -- authentication -------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """Who made a request, and what must hold when its action is recorded."""

    address: str
    nonce: Decimal | None = None  # consumed with the action, when signed
    token_id: str | None = None  # must still be valid then, when a token

    @property
    def requires(self) -> Preconditions:
        if self.nonce is not None:
            return Preconditions.signed(nonce_account(self.address), self.nonce)
        return Preconditions(valid_token=self.token_id)


def token_header(request: web.Request) -> str | None:
    """The raw `Authorization` token (ocean.js sends no "Bearer "; accepted too).
    ocean.js 8.0 sends the literal "undefined" when it has none."""
    value = request.headers.get("Authorization", "").strip()
    value = value.removeprefix("Bearer ").strip()
    return None if value in _NO_TOKEN else value


def _digits(nonce: object) -> Decimal:
    text = str(nonce).strip()
    if isinstance(nonce, bool) or not _DIGITS.match(text):
        raise SignatureError(f"nonce: {nonce!r} is not a valid nonce: digits only")
    return Decimal(text)


async def authenticate(
    request: web.Request, req: Signed, address: str | None, command: str
) -> Caller:
    """Signature first, then token, as Ocean Node does; 401 when neither holds.

    A signature is over address + nonce + command, the address exactly as sent. A
    token stands for its own address: a different consumerAddress is refused.
    """
    if req.signature and req.nonce is not None and address:
        nonce = _digits(req.nonce)
        message = f"{address}{str(req.nonce).strip()}{command}"
        auth.verify(message, req.signature, address, digests=auth.NODE_DIGESTS)
        await request.app[ENGINE].check_nonce(nonce_account(address), nonce)
        return Caller(address, nonce=nonce)
    token = token_header(request)
    if token is not None:
        return await token_caller(request, token, address)
    raise SignatureError(
        "Invalid authentication, you need to provide either a token or an address, "
        "signature and nonce"
    )


async def token_caller(request: web.Request, token: str, address: str | None) -> Caller:
    claims = request.app[TOKENS].check(token)
    if await request.app[ENGINE].token_revoked(claims.token_id):
        raise TokenError("Invalid token: it was invalidated")
    if address and address.lower() != claims.address.lower():
        raise TokenError(f"the token belongs to {claims.address}, not to {address}")
    return Caller(claims.address, token_id=claims.token_id)


# -- auth tokens ----------------------------------------------------------------


async def create_token(request: web.Request) -> web.Response:
    req = parse(CreateTokenRequest, await read_params(request))
    if not req.signature or req.nonce is None:
        raise RequestValidationError({"signature": ["Missing required parameters"]})
    caller = await authenticate(request, req, req.address, "createAuthToken")
    throttle.start(request, caller.address)
    if req.validUntil is not None and req.validUntil <= _now_ms():
        raise RefusedError("validUntil is in the past")
    # The nonce is consumed as the token is made: a refused call leaves it unused.
    assert caller.nonce is not None  # a signature was required above
    await request.app[ENGINE].consume_nonce(nonce_account(caller.address), caller.nonce)
    token = request.app[TOKENS].issue(req.address, str(caller.nonce), req.validUntil)
    return web.json_response({"token": token})


async def invalidate_token(request: web.Request) -> web.Response:
    """Signed by the token's owner: over address + nonce + "invalidateAuthToken", or over
    address + nonce alone, which is what ocean.js 8 signs (a client bug we tolerate)."""
    req = parse(InvalidateTokenRequest, await read_params(request))
    if not req.signature or req.nonce is None:
        raise SignatureError("the signature and nonce of the token's owner are required")
    claims = request.app[TOKENS].check(req.token)
    if claims.address.lower() != req.address.lower():
        raise TokenError(f"the token belongs to {claims.address}, not to {req.address}")
    nonce = _digits(req.nonce)
    message = f"{req.address}{str(req.nonce).strip()}"
    try:
        auth.verify(
            message + "invalidateAuthToken", req.signature, req.address, digests=auth.NODE_DIGESTS
        )
    except SignatureError:
        auth.verify(message, req.signature, req.address, digests=auth.NODE_DIGESTS)
    throttle.start(request, req.address)
    signed = Preconditions.signed(nonce_account(req.address), nonce)
    await request.app[ENGINE].revoke_token(claims.token_id, claims.expires_at, requires=signed)
    return web.json_response({"success": True})


def _now_ms() -> int:
    return int(time.time() * 1000)
