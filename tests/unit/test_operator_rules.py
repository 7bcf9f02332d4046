"""Pure rules of the operator API: who may call it and how a workflow becomes a job."""

from __future__ import annotations

import pytest

from localcompute.web.operator import _truthy, _urls
from localcompute.web.throttle import is_loopback


@pytest.mark.parametrize(
    ("remote", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.5.0.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:10.0.0.1", False),
        ("10.0.0.1", False),
        ("192.168.1.4", False),
        (None, False),
        ("not-an-ip", False),
    ],
)
def test_only_loopback_callers_are_local(remote: str | None, loopback: bool) -> None:
    assert is_loopback(remote) is loopback


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, True),
        (True, True),
        (1, True),
        ("1", True),
        (False, False),
        (0, False),
        ("0", False),
        ("false", False),
    ],
)
def test_publish_flags_read_as_ocean_wrote_them(value: object, expected: bool) -> None:
    assert _truthy(value) is expected


def test_urls_may_be_a_string_or_a_list() -> None:
    assert _urls("a") == ["a"] and _urls(["a", "b"]) == ["a", "b"] and _urls(None) == []
