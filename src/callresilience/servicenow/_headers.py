"""Reading ServiceNow's pacing headers: `Retry-After` and `X-RateLimit-*`.

Pure functions: the caller passes `now` (UNIX seconds) so that tests never read a clock. A
header that cannot be read is treated as absent, never as an error: a garbled header must not
turn a clear 429 into something else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

from .._errors import RateLimit

__all__ = ["parse_rate_limit", "parse_retry_after", "whole_number"]

#: Digits in the longest number a header may carry and still be read.
_MAX_DIGITS: Final = 20

_SECONDS_RE: Final = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,6})?")


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Return how many seconds a `Retry-After` header asks us to wait.

    Both forms of RFC 9110 are read: a number of seconds (``"120"``) and an HTTP date
    (``"Wed, 21 Oct 2026 07:28:00 GMT"``), which is turned into seconds from `now`.

    Args:
        value: The header's value, or None when absent.
        now: The current UNIX time in seconds (from the injected clock's `time()`).

    Returns:
        Seconds to wait (0.0 for a date in the past), or None when the header is absent or
        cannot be read.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _SECONDS_RE.fullmatch(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # RFC 9110 dates are always GMT; a naive result means the zone was "-0000".
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def whole_number(value: str | None) -> int | None:
    """A header's whole number, or None when it is absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    # More digits than any count or time needs is unreadable, not an error (and Python
    # refuses to convert 4,300 digits and more).
    if not text.isascii() or not text.isdigit() or len(text) > _MAX_DIGITS:
        return None
    return int(text)


def parse_rate_limit(headers: Mapping[str, str]) -> RateLimit | None:
    """Return what the `X-RateLimit-*` headers said, or None when none was sent.

    ServiceNow documents `X-RateLimit-Limit` (requests per hour), `X-RateLimit-Reset`
    (a UNIX time in seconds) and `X-RateLimit-Rule` (the matched rule's sys_id). There is no
    "remaining" header, so none is read. A value that cannot be read becomes None.

    Args:
        headers: The response headers; lookups are case-insensitive when given
            `httpx.Headers`, so pass those (or a mapping with lowercase keys).

    Returns:
        The parsed values, or None when none of the three headers is present.
    """
    limit_text = headers.get("x-ratelimit-limit")
    reset_text = headers.get("x-ratelimit-reset")
    rule_text = headers.get("x-ratelimit-rule")
    if limit_text is None and reset_text is None and rule_text is None:
        return None
    reset = None
    reset_seconds = whole_number(reset_text)
    if reset_seconds is not None:
        try:
            reset = datetime.fromtimestamp(reset_seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            reset = None
    rule = rule_text.strip() if rule_text is not None else None
    return RateLimit(limit=whole_number(limit_text), reset=reset, rule=rule or None)
