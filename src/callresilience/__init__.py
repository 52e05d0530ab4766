"""callresilience: offer every call to an agent, whatever the state of ServiceNow.

The public API is what this module exports; everything in a module whose name starts with an
underscore is private and may change without notice.
"""

from __future__ import annotations

import logging as _logging

from ._clock import Clock, SystemClock
from ._errors import (
    AgentStateError,
    AmbiguousError,
    AuthenticationError,
    CallResilienceError,
    CallStateError,
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
    TransferTargetUnavailable,
    TransientError,
    UnknownAgent,
    UnknownCall,
    UnsafeQueryValue,
)
from ._model import Agent, Call, mask_phone
from .engine import (
    AgentChannel,
    CallOffered,
    Engine,
    EngineConfig,
    InteractionCreated,
    Notice,
    Offer,
    OfferEnded,
    OfferRejected,
    OfferTimedOut,
    RecordMapping,
)
from .health import ComponentStatus, Mode, ModeConfig, Severity
from .routing import (
    AgentActivity,
    AgentStatus,
    CallState,
    OfferOutcome,
    OverflowReason,
    QueueConfig,
    RouterConfig,
    Strategy,
)

__all__ = [
    "Agent",
    "AgentActivity",
    "AgentChannel",
    "AgentStateError",
    "AgentStatus",
    "AmbiguousError",
    "AuthenticationError",
    "Call",
    "CallOffered",
    "CallResilienceError",
    "CallState",
    "CallStateError",
    "Clock",
    "ComponentStatus",
    "DuplicateCall",
    "Engine",
    "EngineConfig",
    "InteractionCreated",
    "InteractionRequired",
    "InvalidInput",
    "ItsmUnavailable",
    "Mode",
    "ModeConfig",
    "Notice",
    "Offer",
    "OfferEnded",
    "OfferNotPending",
    "OfferOutcome",
    "OfferRejected",
    "OfferTimedOut",
    "OverflowReason",
    "PermanentError",
    "QueueConfig",
    "RateLimit",
    "RateLimited",
    "RecordMapping",
    "RouterConfig",
    "RoutingError",
    "ServiceNowError",
    "Severity",
    "Strategy",
    "SystemClock",
    "TransferTargetUnavailable",
    "TransientError",
    "UnknownAgent",
    "UnknownCall",
    "UnsafeQueryValue",
    "mask_phone",
]

# A library logs but never decides where logs go: without a handler of the application's,
# Python would print the library's warnings to stderr.
_logging.getLogger("callresilience").addHandler(_logging.NullHandler())
