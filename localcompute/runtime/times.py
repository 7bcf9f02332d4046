"""Docker's times (containers, and Swarm's tasks): RFC 3339 with nanoseconds, trailing
zeros trimmed, and the zero time for never."""

from __future__ import annotations

from datetime import datetime


def docker_time(text: str | None) -> float | None:
    """Seconds since the epoch; None for the zero time (never)."""
    if not text or text.startswith("0001-"):
        return None
    head, _, frac = text.rstrip("Z").partition(".")
    stamp = datetime.fromisoformat(head + "+00:00").timestamp()
    return stamp + (float("0." + frac[:9]) if frac else 0.0)
