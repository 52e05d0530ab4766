"""Test tools shipped with the library: a manual clock, and (soon) a FakeServiceNow.

Import from here in your own adapter's tests; nothing in this package touches the network
beyond 127.0.0.1.
"""

from __future__ import annotations

from ._clock import ManualClock

__all__ = ["ManualClock"]
