"""The pure ACD core: agents, calls, strategies and the decisions they lead to."""

from __future__ import annotations

from ._router import Router
from ._types import (
    AgentActivity,
    AgentNotReady,
    AgentPaused,
    AgentStatus,
    AgentView,
    CallAbandoned,
    CallConnected,
    CallEnded,
    CallOverflowed,
    CallRedirected,
    CallState,
    CallView,
    Decision,
    OfferCall,
    OfferOutcome,
    OverflowReason,
    QueueConfig,
    RouterConfig,
    RouterSnapshot,
    Strategy,
    WithdrawOffer,
)

__all__ = [
    "AgentActivity",
    "AgentNotReady",
    "AgentPaused",
    "AgentStatus",
    "AgentView",
    "CallAbandoned",
    "CallConnected",
    "CallEnded",
    "CallOverflowed",
    "CallRedirected",
    "CallState",
    "CallView",
    "Decision",
    "OfferCall",
    "OfferOutcome",
    "OverflowReason",
    "QueueConfig",
    "Router",
    "RouterConfig",
    "RouterSnapshot",
    "Strategy",
    "WithdrawOffer",
]
