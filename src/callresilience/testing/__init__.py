"""Test tools shipped with the library: a manual clock, a FakeServiceNow with faults, and
scripted agents.

Import from here in your own adapter's tests; nothing in this package touches the network
beyond 127.0.0.1.
"""

from __future__ import annotations

from ._agents import AgentAction, AgentBehaviour, Distribution, ScriptedAgents
from ._clock import ManualClock
from ._encoded_query import EncodedQuery, parse_encoded_query
from ._fake import FakeServiceNow, FakeTransport, RecordedRequest
from ._faults import (
    BlackHole,
    BrokenOk,
    Decision,
    DropResponse,
    ExpireTokens,
    Fault,
    FaultSchedule,
    Hibernating,
    Latency,
    RateLimit,
    RateLimitVerdict,
    RefuseConnections,
    ScheduledFault,
    ServiceUnavailable,
    TransactionCancelled,
    decide,
)

__all__ = [
    "AgentAction",
    "AgentBehaviour",
    "BlackHole",
    "BrokenOk",
    "Decision",
    "Distribution",
    "DropResponse",
    "EncodedQuery",
    "ExpireTokens",
    "FakeServiceNow",
    "FakeTransport",
    "Fault",
    "FaultSchedule",
    "Hibernating",
    "Latency",
    "ManualClock",
    "RateLimit",
    "RateLimitVerdict",
    "RecordedRequest",
    "RefuseConnections",
    "ScheduledFault",
    "ScriptedAgents",
    "ServiceUnavailable",
    "TransactionCancelled",
    "decide",
    "parse_encoded_query",
]
