"""How long to wait before the next attempt: exponential backoff with full jitter, or what the
instance asked for in `Retry-After`, each capped. A pure function of its arguments."""

from __future__ import annotations

import math
import random
from typing import Any

import attrs

from .._errors import InvalidInput
from .._validators import as_seconds

__all__ = ["Backoff"]


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if math.isnan(value) or math.isinf(value) or value <= 0:
        raise InvalidInput(
            f"{attribute.name}: {value!r} is not allowed; give a finite number > 0",
            field=attribute.name,
        )


@attrs.frozen
class Backoff:
    """Exponential backoff with full jitter, and `Retry-After` honoured within a cap.

    The n-th retry waits a random time between 0 and ``min(cap, initial * multiplier**(n-1))``
    ("full jitter", which spreads a crowd of retries best). When the instance said how long to
    wait, that wait is used instead, never more than `max_retry_after`, plus up to 10% (at most
    one second) so that many waiters do not all come back in the same instant.

    Attributes:
        initial: The ceiling of the first retry's wait, in seconds.
        multiplier: How much the ceiling grows with each retry.
        cap: The largest ceiling.
        max_retry_after: The longest `Retry-After` obeyed; longer ones are cut to this.
    """

    initial: float = attrs.field(default=0.5, converter=as_seconds, validator=_positive)
    multiplier: float = attrs.field(default=2.0, validator=_positive)
    cap: float = attrs.field(default=60.0, converter=as_seconds, validator=_positive)
    max_retry_after: float = attrs.field(default=300.0, converter=as_seconds, validator=_positive)

    def ceiling(self, retry: int) -> float:
        """Return the largest wait before retry number `retry` (1 is the first retry)."""
        exponent = max(0, retry - 1)
        # Compare in logarithms so that a large retry count cannot overflow a float.
        if math.log(self.cap / self.initial) <= exponent * math.log(max(self.multiplier, 1.0)):
            return self.cap
        return min(self.cap, self.initial * self.multiplier**exponent)

    def wait(self, retry: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Return how long to wait before retry number `retry`.

        Args:
            retry: 1 for the first retry, 2 for the second...
            rng: The random source for the jitter (seed it for repeatable runs).
            retry_after: What the instance asked for, in seconds, if anything.
        """
        if retry_after is not None and retry_after >= 0:
            wanted = min(retry_after, self.max_retry_after)
            return wanted + rng.uniform(0.0, min(1.0, wanted * 0.1))
        return rng.uniform(0.0, self.ceiling(retry))
