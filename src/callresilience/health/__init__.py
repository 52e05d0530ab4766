"""Health and continuity: resiliency modes per scope, and the links to peer nodes.

Both are pure cores with `now` passed in; the engine will feed and act on them.
"""

from __future__ import annotations

from ._links import LinkMonitor, NodeLinkChanged
from ._modes import ComponentStatus, Mode, ModeChanged, ModeConfig, ModeController

__all__ = [
    "ComponentStatus",
    "LinkMonitor",
    "Mode",
    "ModeChanged",
    "ModeConfig",
    "ModeController",
    "NodeLinkChanged",
]
