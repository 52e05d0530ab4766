"""Pure policies for talking to an instance that may be failing.

The backoff, the circuit breaker and the token bucket take `now` and decide; they never sleep
or send. `retrying` puts the backoff to work in process, on tenacity.
"""

from __future__ import annotations

from ._backoff import Backoff
from ._breaker import BreakerConfig, BreakerState, BreakerStateChanged, CircuitBreaker
from ._bucket import TokenBucket
from ._retry import Attempt, retrying

__all__ = [
    "Attempt",
    "Backoff",
    "BreakerConfig",
    "BreakerState",
    "BreakerStateChanged",
    "CircuitBreaker",
    "TokenBucket",
    "retrying",
]
