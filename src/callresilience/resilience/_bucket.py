"""Pacing: a token bucket whose rate is either configured or learned from the instance.

After an outage the journal holds a backlog. Sending it all at once would earn a storm of 429s
(or re-open the breaker); sending it too slowly wastes the quota. The bucket starts at a modest
rate and grows while it is the bottleneck (slow start); the first 429 sets the rate just below
what the instance let through in the last second, and from then on it creeps up by a percent a
second so that a raised limit is found again. A configured rate is never changed.

Pure: every method takes `now` (monotonic seconds); no clock, no sleeping.
"""

from __future__ import annotations

import collections
import math
from typing import Any, Final

import attrs

from .._errors import InvalidInput

__all__ = ["TokenBucket"]

#: Seconds of answers without rate-limit headers after which a per-second ceiling is lifted.
CEILING_TTL: Final = 5.0


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise InvalidInput(f"{attribute.name}: give a finite number > 0", field=attribute.name)


@attrs.define
class TokenBucket:
    """A token bucket for requests to one instance.

    Attributes:
        rate: Requests per second to allow. With `learn` (the default) it is only the
            starting rate.
        burst: How many requests may go at once after a quiet spell.
        learn: Adjust the rate from the instance's answers (429s and throughput).
        min_rate: The lowest rate learning may set.
        max_rate: The highest rate learning may reach.
        growth: Relative growth per second, while the bucket is the bottleneck, before the
            first 429 (slow start).
        settled_growth: Relative growth per second after the first 429.
    """

    rate: float = attrs.field(default=50.0, validator=_positive)
    burst: float = attrs.field(default=10.0, validator=_positive)
    learn: bool = True
    min_rate: float = attrs.field(default=1.0, validator=_positive)
    max_rate: float = attrs.field(default=2_000.0, validator=_positive)
    growth: float = attrs.field(default=1.0, validator=_positive)
    settled_growth: float = attrs.field(default=0.01, validator=_positive)
    _tokens: float = attrs.field(init=False)
    _last: float | None = attrs.field(default=None, init=False)
    _settled: bool = attrs.field(default=False, init=False)
    _cut_at: float | None = attrs.field(default=None, init=False)
    _ceiling: float | None = attrs.field(default=None, init=False)
    _ceiling_seen: float | None = attrs.field(default=None, init=False)
    _recent: collections.deque[float] = attrs.field(init=False, factory=collections.deque)

    def __attrs_post_init__(self) -> None:
        self._tokens = self.burst

    def reserve(self, now: float) -> float:
        """Take a token and return how long to wait before using it (0: go now).

        Tokens may be reserved ahead: a caller told to wait 0.2 s owns its slot, and the next
        caller waits longer.
        """
        self._refill(now)
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        if self.learn:
            # The bucket holds work back, so the rate may grow. About `rate` calls a second
            # each add `growth`: the rate grows by the share `growth` every second.
            growth = self.settled_growth if self._settled else self.growth
            self.rate = min(self.max_rate, self._ceiling or self.max_rate, self.rate + growth)
        return -self._tokens / self.rate

    def record_success(self, now: float) -> None:
        """Count a request the instance accepted, to measure the rate it allows."""
        recent = self._recent
        recent.append(now)
        while recent and recent[0] <= now - 1.0:
            recent.popleft()

    def observe_limit(self, limit: int, window_left: float, *, now: float | None = None) -> None:
        """Learn from `X-RateLimit-Limit` when the rule's window is a second long.

        A rule whose window resets within two seconds limits requests per second: the bucket
        then stays just under it and never needs a 429 to find it. (ServiceNow's own rules
        are per hour; for them a 429 and its `Retry-After` say when to come back.)

        Args:
            limit: The rule's limit.
            window_left: Seconds until the rule's window resets (`X-RateLimit-Reset` - now).
            now: When the answer came (so that `no_limit_seen` can tell a rule that is gone).
        """
        if not self.learn or not 0 <= window_left <= 2.0 or limit <= 0:
            return
        self._ceiling = max(self.min_rate, limit * 0.97)
        self._ceiling_seen = now
        self.rate = min(self.rate, self._ceiling)

    def no_limit_seen(self, now: float) -> None:
        """An answer came without rate-limit headers.

        A per-second rule announces itself on every answer it covers; once answers have come
        without it for `CEILING_TTL` seconds the rule is gone, so the ceiling is lifted and the
        rate learns afresh (slow start), instead of staying at a limit nobody enforces.
        """
        seen = self._ceiling_seen
        if self._ceiling is None or seen is None or now - seen < CEILING_TTL:
            return
        self._ceiling = None
        self._ceiling_seen = None
        self._settled = False

    def record_rate_limited(self, now: float, retry_after: float | None = None) -> None:
        """A 429 arrived: set the rate just below what got through in the last second.

        After the first 429, nothing more goes out until `retry_after` has passed: the slow
        start overshot and the instance's window is spent. The 429s that follow within a
        second answer requests sent before the cut, so they do not cut again.
        """
        if not self.learn or (self._cut_at is not None and now - self._cut_at < 1.0):
            return
        self._cut_at = now
        recent = self._recent
        while recent and recent[0] <= now - 1.0:
            recent.popleft()
        measured = float(len(recent))
        if self._ceiling is not None:
            # The limit is known: a 429 below it means the instance counts differently
            # (another client shares the quota); lower the ceiling.
            self._ceiling = max(self.min_rate, self._ceiling * 0.95)
            self.rate = min(self.rate, self._ceiling)
        elif not self._settled or measured < 0.7 * self.rate:
            # The end of the slow start, or a limit far below the rate: go by what got through.
            self.rate = max(self.min_rate, min(self.rate, measured) * 0.95)
        else:
            # Crept a little over the limit: step back, and creep up again from there.
            self.rate = max(self.min_rate, self.rate * 0.9)
        self._refill(now)
        # The first 429 ends the slow start, which overshoots by up to a second's growth:
        # wait the window out. Later ones come from creeping a percent over: just slow down.
        hold = 0.0 if self._settled else (retry_after or 0.0)
        self._tokens = min(self._tokens, -hold * self.rate)
        self._settled = True

    def _refill(self, now: float) -> None:
        if self._last is not None and now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        if self._last is None or now > self._last:
            self._last = now
