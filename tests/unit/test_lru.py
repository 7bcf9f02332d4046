"""The bounded mapping the server keeps per-job answers in."""

from __future__ import annotations

import pytest

from localcompute.core.lru import Lru


def test_the_entry_used_least_recently_goes_first() -> None:
    cache: Lru[str, int] = Lru(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # now "b" is the oldest
    cache.put("c", 3)

    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (1, None, 3, 2)


def test_discard_forgets_and_a_size_under_one_is_refused() -> None:
    cache: Lru[str, int] = Lru(1)
    cache.put("a", 1)
    cache.discard("a")
    cache.discard("never there")

    assert len(cache) == 0
    with pytest.raises(ValueError, match="at least one"):
        Lru(0)
