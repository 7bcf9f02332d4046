"""Token buckets: how many requests one client may send, so that one in a tight loop
cannot take the server's time from the others. Pure: a clock is passed in, no HTTP.

Three kinds, each its own bucket per key ([limits] names their rates and bursts):

- "start": calls that write (job starts, stops, deletes, tokens), per address;
- "read": signed reads (status, results, logs), per address and job, so that a client
  polling each of its jobs once a second is never limited, however many it has;
- "unsigned": routes without a signature, per client IP.

A bucket holds up to `burst` tokens and gains `rate` a second; a request takes one, or is
refused with the seconds until one is there.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Literal

from localcompute.core.errors import LimitError
from localcompute.core.limit_settings import LimitSettings

Kind = Literal["start", "read", "unsigned"]
KINDS: tuple[Kind, ...] = ("start", "read", "unsigned")
# How many keys of each kind are remembered. A bucket left alone for burst / rate
# seconds is full again, as good as none: those are dropped first, so the bound only
# forgets a bucket that is not full when more keys than this are all busy at once.
MAX_KEYS = 10_000
# What each kind is called in a refusal, and the setting that limits it.
_WHAT = {"start": "job starts", "read": "signed reads", "unsigned": "unsigned requests"}
_SETTING = {
    "start": "starts_per_second",
    "read": "reads_per_second",
    "unsigned": "unsigned_per_second",
}


class TokenBucket:
    """Up to `burst` tokens, refilled at `rate` a second from `now` on; starts full."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a bucket needs rate > 0 and burst >= 1, not {rate}, {burst}")
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def __repr__(self) -> str:
        return f"<TokenBucket {self.tokens:.2f}/{self.burst} +{self.rate:g}/s>"

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait(self, now: float) -> float:
        """Seconds until there is a token: 0 when there is one now."""
        self._refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self, now: float) -> float:
        """Take one token: 0 when there was one, else the seconds until there is (and
        nothing is taken)."""
        wait = self.wait(now)
        if wait == 0:
            self.tokens -= 1
        return wait

    def full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.burst


class RequestBuckets:
    """The buckets of every client, by kind and key, at most `size` keys of each kind;
    and who skips them ([limits] exempt_loopback, exempt_operators, an address's row)."""

    def __init__(
        self,
        limits: LimitSettings,
        *,
        operators: Iterable[str] = (),
        size: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if size < 1:
            raise ValueError(f"RequestBuckets keep at least one key, not {size}")
        self.limits = limits
        self.size = size
        self._clock = clock
        self._operators = frozenset(a.lower() for a in operators)
        self._rates: dict[Kind, tuple[float, int]] = {
            "start": (limits.starts_per_second, limits.start_burst),
            "read": (limits.reads_per_second, limits.read_burst),
            "unsigned": (limits.unsigned_per_second, limits.unsigned_burst),
        }
        # One mapping per kind, oldest use first: a flood of one kind's keys (IPs, say)
        # cannot push out another kind's buckets.
        self._buckets: dict[Kind, OrderedDict[Hashable, TokenBucket]] = {
            kind: OrderedDict() for kind in KINDS
        }

    def __repr__(self) -> str:
        held = ", ".join(f"{kind} {len(self._buckets[kind])}" for kind in KINDS)
        return f"<RequestBuckets {held} of {self.size} each>"

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets.values())

    def exempt(self, address: str | None = None, *, loopback: bool = False) -> bool:
        """Whether a request skips the buckets: from loopback when exempt_loopback, signed
        by an [operator] allowed_providers address when exempt_operators, or by an
        address whose [limits.addresses] row says exempt."""
        if loopback and self.limits.exempt_loopback:
            return True
        if address is None:
            return False
        if self.limits.exempt_operators and address.lower() in self._operators:
            return True
        return self.limits.for_address(address).exempt

    def take(self, key: Hashable, kind: Kind) -> None:
        """One request of `kind` from `key`; LimitError (nothing taken) when its bucket
        is empty, naming the setting and the seconds until a token is there."""
        now = self._clock()
        buckets = self._buckets[kind]
        bucket = buckets.get(key)
        if bucket is None:
            rate, burst = self._rates[kind]
            bucket = TokenBucket(rate, burst, now)
            buckets[key] = bucket
            self._forget(buckets, now)
        else:
            buckets.move_to_end(key)
        wait = bucket.take(now)
        if wait > 0:
            raise self._refusal(kind, bucket, wait)

    def check(self, key: Hashable, kind: Kind) -> None:
        """LimitError if `key` has a bucket and it is empty; nothing is taken. A request
        that `take` would refuse can so be refused before its costly checks."""
        bucket = self._buckets[kind].get(key)
        if bucket is not None:
            wait = bucket.wait(self._clock())
            if wait > 0:
                raise self._refusal(kind, bucket, wait)

    def _refusal(self, kind: Kind, bucket: TokenBucket, wait: float) -> LimitError:
        setting = _SETTING[kind]
        rate = self._rates[kind][0]
        return LimitError(
            f"too many {_WHAT[kind]}: {rate:g} a second ({setting}), "
            f"{bucket.burst} at once; try again in {wait:.2f} s",
            limit=setting,
            value=rate,
            retry_after=wait,
        )

    def _forget(self, buckets: OrderedDict[Hashable, TokenBucket], now: float) -> None:
        """Drop the oldest buckets that are full again (no loss: a new one starts full),
        then, while there are more than `size`, the oldest whatever they hold."""
        while len(buckets) > 1:
            oldest_key, oldest = next(iter(buckets.items()))
            if not oldest.full(now):
                break
            del buckets[oldest_key]
        while len(buckets) > self.size:
            buckets.popitem(last=False)
