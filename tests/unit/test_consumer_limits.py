"""Per-consumer job limits: which refuses a start, with what it says; an address's row
replaces [limits], an environment's limits apply besides, in that environment."""

from __future__ import annotations

import pytest

from localcompute.core.errors import LimitError
from localcompute.core.limit_settings import AddressLimits, JobLimits, LimitSettings
from localcompute.core.models import ConsumerCounts
from localcompute.core.settings import EnvironmentSettings
from localcompute.engine.consumer_limits import check_start, running_caps

OWNER = "0x" + "ab" * 20
ENV = EnvironmentSettings(id="e")
NOW = 10_000.0


def test_a_consumer_at_max_waiting_is_refused_naming_the_limit() -> None:
    limits = LimitSettings(max_waiting=3)
    check_start(limits, ENV, OWNER, {"e": ConsumerCounts(waiting=2)}, NOW)
    with pytest.raises(LimitError) as refused:
        check_start(
            limits,
            ENV,
            OWNER,
            {"e": ConsumerCounts(waiting=2), "f": ConsumerCounts(waiting=1)},
            NOW,
        )
    e = refused.value
    assert (e.limit, e.value, e.retry_after) == ("max_waiting", 3, None)
    assert "has 3 jobs waiting" in e.message and "[limits] allows (3)" in e.message


def test_starts_per_hour_says_when_the_oldest_start_leaves_the_hour() -> None:
    limits = LimitSettings(max_starts_per_hour=5)
    counts = {"e": ConsumerCounts(started=5, first_started=NOW - 3000)}
    with pytest.raises(LimitError) as refused:
        check_start(limits, ENV, OWNER, counts, NOW)
    assert refused.value.limit == "max_starts_per_hour"
    assert refused.value.retry_after == pytest.approx(600)


def test_an_address_row_replaces_limits_and_an_environments_limits_apply_besides() -> None:
    limits = LimitSettings(
        max_waiting=1, addresses={OWNER.upper().replace("0X", "0x"): AddressLimits(max_waiting=10)}
    )
    check_start(limits, ENV, OWNER, {"e": ConsumerCounts(waiting=5)}, NOW)
    narrow = EnvironmentSettings(id="e", limits=JobLimits(max_waiting=2))
    check_start(
        limits,
        narrow,
        OWNER,
        {"other": ConsumerCounts(waiting=5), "e": ConsumerCounts(waiting=1)},
        NOW,
    )
    with pytest.raises(LimitError, match="environment e's limits allows \\(2\\)"):
        check_start(limits, narrow, OWNER, {"e": ConsumerCounts(waiting=2)}, NOW)


def test_zero_is_no_limit_and_max_running_never_refuses_a_start() -> None:
    limits = LimitSettings(max_waiting=0, max_running=1)
    check_start(limits, ENV, OWNER, {"e": ConsumerCounts(waiting=10**6, running=5)}, NOW)
    capped = EnvironmentSettings(id="e", limits=JobLimits(max_running=2))
    assert running_caps(limits, capped, OWNER).overall == 1
    assert running_caps(limits, capped, OWNER).in_environment == 2
    assert running_caps(LimitSettings(), None, OWNER).overall == 0


def test_address_rows_must_be_addresses_given_once() -> None:
    with pytest.raises(ValueError, match="is not a 0x… address"):
        LimitSettings(addresses={"alice": AddressLimits()})
    with pytest.raises(ValueError, match="is given twice"):
        LimitSettings(
            addresses={OWNER: AddressLimits(), OWNER.upper().replace("0X", "0x"): AddressLimits()}
        )
