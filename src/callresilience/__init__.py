"""callresilience: offer every call to an agent, whatever the state of ServiceNow.

The public API is what this module exports; everything in a module whose name starts with an
underscore is private and may change without notice.
"""

from __future__ import annotations

from ._clock import Clock, SystemClock
from ._errors import (
    AgentStateError,
    AmbiguousError,
    AuthenticationError,
    CallResilienceError,
    DuplicateCall,
    InteractionRequired,
    InvalidInput,
    ItsmUnavailable,
    OfferNotPending,
    PermanentError,
    RateLimit,
    RateLimited,
    RoutingError,
    ServiceNowError,
    TransientError,
    UnknownAgent,
    UnknownCall,
    UnsafeQueryValue,
)
from ._model import Agent, Call, mask_phone

__all__ = [
    "Agent",
    "AgentStateError",
    "AmbiguousError",
    "AuthenticationError",
    "Call",
    "CallResilienceError",
    "Clock",
    "DuplicateCall",
    "InteractionRequired",
    "InvalidInput",
    "ItsmUnavailable",
    "OfferNotPending",
    "PermanentError",
    "RateLimit",
    "RateLimited",
    "RoutingError",
    "ServiceNowError",
    "SystemClock",
    "TransientError",
    "UnknownAgent",
    "UnknownCall",
    "UnsafeQueryValue",
    "mask_phone",
]
