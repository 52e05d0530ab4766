"""Durations given as seconds or as `timedelta`, as stamina takes them."""

from __future__ import annotations

import math
from datetime import timedelta

from .._errors import InvalidInput

__all__ = ["to_seconds"]


def to_seconds(value: float | timedelta, *, name: str, allow_zero: bool = False) -> float:
    """Return `value` in seconds, or raise `InvalidInput` naming `name`.

    Args:
        value: Seconds as a number, or a `timedelta`.
        name: The option's name, for the error.
        allow_zero: Whether 0 is allowed.
    """
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise InvalidInput(
            f"{name}: expected seconds as a number or a timedelta, got {type(value).__name__}",
            field=name,
        )
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        lowest = "0 or more" if allow_zero else "more than 0"
        raise InvalidInput(f"{name}: {seconds!r} s is not allowed; use {lowest}", field=name)
    return float(seconds)
