"""Per-consumer job limits: how many jobs one owner address may have waiting, holding
slots, and started in any hour. The rules every dialect refuses by alike; the counts are
read in the start's own transaction, so two starts at once cannot both pass the last place.

max_waiting and max_starts_per_hour refuse a start at once. max_running does not: a
consumer's job past it waits (counted by max_waiting) while the slot goes to another's
(fair turns skip it), and runs when one of the consumer's own jobs ends.

[limits] counts all of a consumer's jobs; an address's own row replaces those values for
it. An environment's `limits` apply besides, counted over that environment's jobs. 0 is
no limit. A refusal is a LimitError: which limit, its value, when trying again can work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from localcompute.core.errors import LimitError
from localcompute.core.limit_settings import JobLimits, LimitSettings
from localcompute.core.models import ConsumerCounts
from localcompute.core.settings import EnvironmentSettings

HOUR = 3600.0


@dataclass(frozen=True)
class _Scope:
    where: str  # how the refusal names where the limit is set
    limits: JobLimits
    counts: ConsumerCounts


def _sum(counts: Mapping[str, ConsumerCounts]) -> ConsumerCounts:
    firsts = [c.first_started for c in counts.values() if c.first_started is not None]
    return ConsumerCounts(
        waiting=sum(c.waiting for c in counts.values()),
        running=sum(c.running for c in counts.values()),
        started=sum(c.started for c in counts.values()),
        first_started=min(firsts, default=None),
    )


def consumer_limits(settings: LimitSettings, address: str) -> JobLimits:
    """[limits]' job limits with the address's own row over them."""
    row = settings.for_address(address)
    return JobLimits(
        max_waiting=settings.max_waiting if row.max_waiting is None else row.max_waiting,
        max_running=settings.max_running if row.max_running is None else row.max_running,
        max_starts_per_hour=(
            settings.max_starts_per_hour
            if row.max_starts_per_hour is None
            else row.max_starts_per_hour
        ),
    )


def check_start(
    settings: LimitSettings,
    env: EnvironmentSettings,
    owner: str,
    counts: Mapping[str, ConsumerCounts],
    now: float,
) -> None:
    """LimitError if one more job of `owner` in `env` would pass one of its limits."""
    where = "[limits]" if owner.lower() not in settings.addresses else f"[limits] for {owner}"
    scopes = [
        _Scope(where, consumer_limits(settings, owner), _sum(counts)),
        _Scope(
            f"environment {env.id}'s limits",
            env.limits,
            counts.get(env.id, ConsumerCounts()),
        ),
    ]
    for scope in scopes:
        _check(scope, owner, now)


def _check(scope: _Scope, owner: str, now: float) -> None:
    limits, counts = scope.limits, scope.counts
    if limits.max_waiting and counts.waiting >= limits.max_waiting:
        raise LimitError(
            f"max_waiting: {owner} has {counts.waiting} jobs waiting for a slot, the most "
            f"{scope.where} allows ({limits.max_waiting}); start again once one of them starts "
            "or is stopped",
            limit="max_waiting",
            value=limits.max_waiting,
        )
    if limits.max_starts_per_hour and counts.started >= limits.max_starts_per_hour:
        oldest = counts.first_started if counts.first_started is not None else now
        retry = max(1.0, oldest + HOUR - now)
        raise LimitError(
            f"max_starts_per_hour: {owner} started {counts.started} jobs in the last hour, "
            f"the most {scope.where} allows ({limits.max_starts_per_hour}); "
            f"try again in {retry:.0f} s",
            limit="max_starts_per_hour",
            value=limits.max_starts_per_hour,
            retry_after=retry,
        )


def running_caps(settings: LimitSettings, env: EnvironmentSettings | None, owner: str) -> Caps:
    """The most jobs `owner` may hold slots for at once: in all, and in `env` (0: no cap)."""
    overall = consumer_limits(settings, owner).max_running or 0
    return Caps(overall, (env.limits.max_running or 0) if env is not None else 0)


@dataclass(frozen=True)
class Caps:
    overall: int
    in_environment: int
