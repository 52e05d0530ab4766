"""The engine adapters import: calls in, offers out, ServiceNow records journaled."""

from __future__ import annotations

from ._engine import Engine
from ._records import CallRecords, RecordMapping, servicenow_time
from ._types import (
    AgentChannel,
    AgentNotified,
    CallOffered,
    EndpointChanged,
    EngineConfig,
    EngineEvent,
    InteractionCreated,
    Notice,
    Offer,
    OfferEnded,
    OfferRejected,
    OfferTimedOut,
    default_journal_path,
)

__all__ = [
    "AgentChannel",
    "AgentNotified",
    "CallOffered",
    "CallRecords",
    "EndpointChanged",
    "Engine",
    "EngineConfig",
    "EngineEvent",
    "InteractionCreated",
    "Notice",
    "Offer",
    "OfferEnded",
    "OfferRejected",
    "OfferTimedOut",
    "RecordMapping",
    "default_journal_path",
    "servicenow_time",
]
