"""attrs validators and converters that several settings classes share.

Each raises `InvalidInput` naming the field, so a bad setting says what to give.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import attrs

from ._errors import InvalidInput

__all__ = [
    "as_seconds",
    "at_least_one",
    "positive_seconds",
    "seconds_above_zero",
    "seconds_at_least_zero",
]


def as_seconds(value: float | timedelta) -> float:
    """A duration given as seconds or as a `timedelta`, in seconds."""
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def seconds_at_least_zero(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    """Refuse a duration below zero (or NaN)."""
    if not value >= 0:
        raise InvalidInput(f"{attribute.name}: give seconds >= 0", field=attribute.name)


def positive_seconds(field: str, value: object) -> float:
    """Return `value` as seconds if it is a number above zero, else raise `InvalidInput`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidInput(f"{field}: give seconds > 0", field=field)
    return float(value)


def seconds_above_zero(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    """Refuse a duration of zero or less (or NaN)."""
    positive_seconds(attribute.name, value)


def at_least_one(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    """Refuse anything but a whole number of at least one (booleans included)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{attribute.name}: give a whole number >= 1", field=attribute.name)
