"""Health and continuity: components, resiliency modes per scope, incidents, agent notices and
the links to peer nodes.

Each is a pure core with `now` passed in; the engine feeds them and acts on what they decide.
"""

from __future__ import annotations

from ._incidents import Incident, IncidentBook, IncidentChanged, Severity
from ._links import LinkMonitor, NodeLinkChanged
from ._modes import ComponentStatus, Mode, ModeChanged, ModeConfig, ModeController
from ._notices import ModeNotice, NoticeBoard

__all__ = [
    "ComponentStatus",
    "Incident",
    "IncidentBook",
    "IncidentChanged",
    "LinkMonitor",
    "Mode",
    "ModeChanged",
    "ModeConfig",
    "ModeController",
    "ModeNotice",
    "NodeLinkChanged",
    "NoticeBoard",
    "Severity",
]
