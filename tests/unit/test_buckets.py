"""The request buckets, on a clock the test moves: burst, refill, the exact wait, who is
exempt, and that a flood of keys holds no more than the bound."""

from __future__ import annotations

import pytest

from localcompute.core.errors import LimitError
from localcompute.core.limit_settings import AddressLimits, LimitSettings
from localcompute.engine.buckets import RequestBuckets, TokenBucket

ALICE = "0x" + "a1" * 20
OPERATOR = "0x" + "0b" * 20


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def buckets(clock: Clock, size: int = 100, **limits: object) -> RequestBuckets:
    settings = LimitSettings.model_validate(limits)
    return RequestBuckets(settings, operators=[OPERATOR.upper()], size=size, clock=clock)


def refusal(b: RequestBuckets, key: object, kind: str = "read") -> LimitError:
    with pytest.raises(LimitError) as refused:
        b.take(key, kind)  # type: ignore[arg-type]
    return refused.value


def test_a_bucket_gives_its_burst_then_one_per_tick() -> None:
    bucket = TokenBucket(rate=4, burst=3, now=0)
    assert [bucket.take(0) for _ in range(3)] == [0, 0, 0]
    assert bucket.take(0) == pytest.approx(0.25)  # one token comes in 1/4 s
    assert bucket.take(0.1) == pytest.approx(0.15)  # what is left of it
    assert bucket.take(0.25) == 0
    assert bucket.take(10) == 0  # refilled, never beyond the burst:
    assert bucket.tokens == pytest.approx(2)


def test_past_the_burst_the_refusal_names_the_setting_and_the_exact_wait() -> None:
    clock = Clock()
    b = buckets(clock, reads_per_second=5, read_burst=30)
    for _ in range(30):
        b.take((ALICE, "job"), "read")
    error = refusal(b, (ALICE, "job"))
    assert (error.limit, error.value, error.retry_after) == ("reads_per_second", 5, 0.2)
    assert "reads_per_second" in error.message
    clock.now += 0.1
    assert refusal(b, (ALICE, "job")).retry_after == pytest.approx(0.1)  # nothing was taken
    clock.now += 0.1
    b.take((ALICE, "job"), "read")
    refusal(b, (ALICE, "job"))
    b.take(ALICE, "start")  # each kind is its own bucket
    b.take((ALICE, "another job"), "read")  # and each key


@pytest.mark.parametrize(
    ("kind", "setting", "rate", "burst"),
    [
        ("start", "starts_per_second", 2, 20),
        ("read", "reads_per_second", 5, 30),
        ("unsigned", "unsigned_per_second", 50, 200),
    ],
)
def test_each_kind_has_its_defaults(kind: str, setting: str, rate: float, burst: int) -> None:
    b = buckets(Clock())
    for _ in range(burst):
        b.take("k", kind)  # type: ignore[arg-type]
    error = refusal(b, "k", kind)
    assert (error.limit, error.value) == (setting, rate)
    assert error.retry_after == pytest.approx(1 / rate)


def test_polling_each_job_once_a_second_is_never_limited_and_200_a_second_is() -> None:
    clock = Clock()
    b = buckets(clock)  # the defaults: 5 a second per address and job, 30 at once
    for _ in range(600):  # ten minutes of 20 jobs polled once a second each
        for job in range(20):
            b.take((ALICE, job), "read")
        clock.now += 1
    answered = refused = 0
    for _ in range(400):  # two seconds at 200 a second
        try:
            b.take((ALICE, 0), "read")
            answered += 1
        except LimitError:
            refused += 1
        clock.now += 1 / 200
    assert refused > 300 and answered <= 30 + 2 * 5 + 1


def test_a_flood_of_keys_holds_no_more_than_the_bound() -> None:
    clock = Clock()
    b = buckets(clock, size=50, unsigned_burst=2)
    for i in range(10_000):
        b.take(f"10.0.{i // 256}.{i % 256}", "unsigned")
        b.take(f"10.0.{i // 256}.{i % 256}", "unsigned")  # not full: kept until pushed out
    assert len(b) == 50
    b.take(ALICE, "start")  # another kind has room of its own
    assert len(b) == 51


def test_a_full_bucket_is_dropped_as_soon_as_a_new_key_comes() -> None:
    clock = Clock()
    b = buckets(clock, unsigned_per_second=10, unsigned_burst=2)
    b.take("10.0.0.1", "unsigned")
    clock.now += 0.1  # full again: as good as none
    b.take("10.0.0.2", "unsigned")
    assert len(b) == 1


def test_an_evicted_key_starts_again_full() -> None:
    clock = Clock()
    b = buckets(clock, size=1, read_burst=1)
    b.take("a", "read")
    refusal(b, "a")
    b.take("b", "read")  # pushes "a" out
    b.take("a", "read")


def test_who_is_exempt() -> None:
    b = buckets(Clock(), addresses={ALICE: AddressLimits(exempt=True)})
    assert b.exempt(ALICE.replace("a1", "A1")) and b.exempt(OPERATOR)
    assert not b.exempt("0x" + "cc" * 20) and not b.exempt(loopback=True)
    assert buckets(Clock(), exempt_loopback=True).exempt(loopback=True)
    assert not buckets(Clock(), exempt_operators=False).exempt(OPERATOR)


def test_bad_buckets_are_refused() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1, now=0)
    with pytest.raises(ValueError):
        buckets(Clock(), size=0)


def test_check_refuses_an_empty_bucket_and_takes_nothing() -> None:
    clock = Clock()
    b = buckets(clock, read_burst=2)
    b.check((ALICE, "job"), "read")  # no bucket yet: nothing to say, and none made
    assert len(b) == 0
    b.take((ALICE, "job"), "read")
    b.check((ALICE, "job"), "read")  # one token left, and still there after:
    b.take((ALICE, "job"), "read")
    with pytest.raises(LimitError) as refused:
        b.check((ALICE, "job"), "read")
    assert refused.value.retry_after == pytest.approx(0.2)
    clock.now += 0.2
    b.check((ALICE, "job"), "read")
    b.take((ALICE, "job"), "read")
