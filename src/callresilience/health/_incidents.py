"""Incidents: opened and resolved from component changes, or by hand. Pure.

A component that turns degraded opens a `minor` incident, one in outage a `major` one; a worse
status raises the severity of the incident already open, and the component's return to
operational resolves it. An operator may open an incident by hand (a known carrier problem, a
planned maintenance) and must resolve it by hand. Resolved incidents are kept, newest last, up
to a bound, for status pages.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable
from typing import Any, Final

import attrs

from .._errors import InvalidInput
from .._model import check_identifier
from ._modes import ComponentStatus, describe

__all__ = ["Incident", "IncidentBook", "IncidentChanged", "Severity"]

#: Resolved incidents kept for `IncidentBook.recent`.
KEPT_RESOLVED: Final = 100
MAX_TITLE: Final = 200


class Severity(enum.Enum):
    """How bad an incident is."""

    MINOR = "minor"
    MAJOR = "major"
    CRITICAL = "critical"


_RANK: Final = {Severity.MINOR: 1, Severity.MAJOR: 2, Severity.CRITICAL: 3}
_FROM_STATUS: Final = {
    ComponentStatus.DEGRADED: Severity.MINOR,
    ComponentStatus.OUTAGE: Severity.MAJOR,
}


@attrs.frozen
class Incident:
    """Something is wrong, since `started` (UNIX time), and until `ended` once resolved.

    Attributes:
        incident_id: Its number, from 1, never reused.
        title: What is wrong, in a line.
        severity: How bad it is (the worst it reached).
        component: The component it follows, or None for one opened by hand.
        scopes: The scopes it affects (empty: every scope).
        started: When it opened.
        ended: When it was resolved, or None while open.
    """

    incident_id: int
    title: str
    severity: Severity
    component: str | None
    scopes: frozenset[str]
    started: float
    ended: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The incident, JSON-ready."""
        return {
            "id": self.incident_id,
            "title": self.title,
            "severity": self.severity.value,
            "component": self.component,
            "scopes": sorted(self.scopes),
            "started": self.started,
            "ended": self.ended,
        }


@attrs.frozen
class IncidentChanged:
    """An incident opened, got worse, or was resolved (`incident.ended` is then set)."""

    incident: Incident
    change: str  # "opened", "escalated" or "resolved"


class IncidentBook:
    """Keeps the open incidents and the recently resolved ones."""

    def __init__(self) -> None:
        self._open: dict[int, Incident] = {}
        self._by_component: dict[str, int] = {}
        self._resolved: deque[Incident] = deque(maxlen=KEPT_RESOLVED)
        self._next_id = 1

    def __repr__(self) -> str:
        return f"<IncidentBook open={len(self._open)} resolved={len(self._resolved)}>"

    def component_changed(
        self, component: str, status: ComponentStatus, scopes: Iterable[str], now: float
    ) -> list[IncidentChanged]:
        """Open, escalate or resolve the component's incident after its status changed."""
        check_identifier("component", component)
        current = self._by_component.get(component)
        if status is ComponentStatus.OPERATIONAL:
            if current is None:
                return []
            del self._by_component[component]
            return [self._close(current, now)]
        severity = _FROM_STATUS[status]
        if current is None:
            incident = self._add(
                describe(component, status), severity, component, frozenset(scopes), now
            )
            self._by_component[component] = incident.incident_id
            return [IncidentChanged(incident, "opened")]
        incident = self._open[current]
        if _RANK[severity] <= _RANK[incident.severity]:
            return []
        incident = attrs.evolve(incident, severity=severity, title=describe(component, status))
        self._open[current] = incident
        return [IncidentChanged(incident, "escalated")]

    def open(
        self, title: str, severity: Severity, scopes: Iterable[str], now: float
    ) -> IncidentChanged:
        """Open an incident by hand; it stays open until `resolve`.

        Raises:
            InvalidInput: The title is empty or longer than 200 characters, the severity is not
                a `Severity`, or a scope is not an identifier.
        """
        if not isinstance(title, str) or not 0 < len(title.strip()) <= MAX_TITLE:
            raise InvalidInput(
                f"title: give a line of 1-{MAX_TITLE} characters saying what is wrong",
                field="title",
            )
        if not isinstance(severity, Severity):
            raise InvalidInput(
                "severity: give Severity.MINOR, Severity.MAJOR or Severity.CRITICAL",
                field="severity",
            )
        if isinstance(scopes, str) or not isinstance(scopes, Iterable):
            raise InvalidInput(
                f"scopes: give a list of scope names, e.g. [{scopes!r}]", field="scopes"
            )
        names = frozenset(check_identifier("scope", scope) for scope in scopes)
        incident = self._add(title.strip(), severity, None, names, now)
        return IncidentChanged(incident, "opened")

    def resolve(self, incident_id: int, now: float) -> IncidentChanged:
        """Resolve an open incident by hand.

        Raises:
            InvalidInput: No open incident has this id.
        """
        if incident_id not in self._open:
            raise InvalidInput(
                f"incident_id: {incident_id!r} is not an open incident; see open_incidents()",
                field="incident_id",
            )
        for component, number in list(self._by_component.items()):
            if number == incident_id:
                del self._by_component[component]
        return self._close(incident_id, now)

    def open_incidents(self) -> list[Incident]:
        """The open incidents, oldest first."""
        return sorted(self._open.values(), key=lambda i: i.incident_id)

    def recent(self) -> list[Incident]:
        """The recently resolved incidents, oldest first."""
        return list(self._resolved)

    def _add(
        self,
        title: str,
        severity: Severity,
        component: str | None,
        scopes: frozenset[str],
        now: float,
    ) -> Incident:
        incident = Incident(self._next_id, title, severity, component, scopes, now)
        self._next_id += 1
        self._open[incident.incident_id] = incident
        return incident

    def _close(self, incident_id: int, now: float) -> IncidentChanged:
        incident = attrs.evolve(self._open.pop(incident_id), ended=now)
        self._resolved.append(incident)
        return IncidentChanged(incident, "resolved")
