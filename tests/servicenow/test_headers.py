"""Retry-After and X-RateLimit-* parsing, with `now` passed in."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from callresilience import RateLimit
from callresilience.servicenow._headers import parse_rate_limit, parse_retry_after

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("2.5", 2.5),
        ("Sun, 01 Mar 2026 12:00:30 GMT", 30.0),
        ("Sun, 01 Mar 2026 11:59:00 GMT", 0.0),
        ("Sun, 01 Mar 2026 12:01:00 -0000", 60.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1e9", None),
        ("Sun, 99 Foo 2026", None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(
    value: str | None, expected: float | None
) -> None:
    """Retry-After is read as seconds or as an HTTP date relative to `now`; junk is None."""
    assert parse_retry_after(value, now=NOW) == expected


def test_rate_limit_headers_are_parsed() -> None:
    """X-RateLimit-Limit, -Reset (UNIX seconds) and -Rule become a RateLimit."""
    headers = httpx.Headers(
        {
            "X-RateLimit-Limit": "100",
            "X-RateLimit-Reset": "1772366400",
            "X-RateLimit-Rule": "8a9c2e4f1b2c3d4e5f60718293a4b5c6",
        }
    )
    assert parse_rate_limit(headers) == RateLimit(
        limit=100,
        reset=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
        rule="8a9c2e4f1b2c3d4e5f60718293a4b5c6",
    )


def test_rate_limit_absent_is_none() -> None:
    """Without any X-RateLimit-* header there is no RateLimit."""
    assert parse_rate_limit(httpx.Headers({"Content-Type": "application/json"})) is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-ratelimit-limit": "lots"}, RateLimit()),
        ({"x-ratelimit-reset": "99999999999999999999"}, RateLimit()),
        ({"x-ratelimit-reset": "-1"}, RateLimit()),
        ({"x-ratelimit-rule": "  "}, RateLimit()),
        ({"x-ratelimit-limit": "\u0663"}, RateLimit()),
        ({"x-ratelimit-limit": " 50 "}, RateLimit(limit=50)),
    ],
)
def test_unreadable_rate_limit_values_become_none(
    headers: dict[str, str], expected: RateLimit
) -> None:
    """A rate-limit header that cannot be read is left out, never raised."""
    assert parse_rate_limit(headers) == expected
