"""The incident book: incidents opened, escalated and resolved from component health, or by hand."""

from __future__ import annotations

import json
from typing import Any

import pytest

from callresilience import InvalidInput
from callresilience.health import (
    ComponentStatus,
    Incident,
    IncidentBook,
    IncidentChanged,
    Severity,
)
from callresilience.health._incidents import KEPT_RESOLVED

OUTAGE, OK, DEGRADED = ComponentStatus.OUTAGE, ComponentStatus.OPERATIONAL, ComponentStatus.DEGRADED
SCOPES = frozenset({"emea", "amer"})


def changes_of(changes: list[IncidentChanged]) -> list[tuple[str, int, Severity, float | None]]:
    """Each change as (change, id, severity, ended): what the tests compare."""
    return [
        (c.change, c.incident.incident_id, c.incident.severity, c.incident.ended) for c in changes
    ]


def snapshot(book: IncidentBook) -> tuple[list[Incident], list[Incident]]:
    """The open and the resolved incidents, to check that a refused call changed nothing."""
    return book.open_incidents(), book.recent()


@pytest.mark.parametrize(
    ("status", "severity"), [(DEGRADED, Severity.MINOR), (OUTAGE, Severity.MAJOR)]
)
def test_a_failing_component_opens_an_incident_of_its_severity(
    status: ComponentStatus, severity: Severity
) -> None:
    """Degraded opens a minor incident, outage a major one, naming the component and scopes."""
    book = IncidentBook()
    (change,) = book.component_changed("carrier", status, SCOPES, 100.0)
    assert change.change == "opened"
    assert change.incident == Incident(
        1,
        f"carrier is {'down' if status is OUTAGE else status.value}",
        severity,
        "carrier",
        SCOPES,
        100.0,
    )
    assert book.open_incidents() == [change.incident]
    assert book.recent() == []


def test_a_worse_status_escalates_the_open_incident() -> None:
    """Degraded then outage: the same incident becomes major, with a new title."""
    book = IncidentBook()
    book.component_changed("carrier", DEGRADED, SCOPES, 1.0)
    (change,) = book.component_changed("carrier", OUTAGE, SCOPES, 2.0)
    assert changes_of([change]) == [("escalated", 1, Severity.MAJOR, None)]
    assert change.incident.title == "carrier is down"
    assert change.incident.started == 1.0
    assert book.open_incidents() == [change.incident]


@pytest.mark.parametrize("status", [DEGRADED, OUTAGE])
def test_a_better_but_still_failing_status_keeps_the_severity(status: ComponentStatus) -> None:
    """Outage then degraded (or outage again): no change, the incident stays major."""
    book = IncidentBook()
    (opened,) = book.component_changed("carrier", OUTAGE, SCOPES, 1.0)
    assert book.component_changed("carrier", status, SCOPES, 2.0) == []
    assert book.open_incidents() == [opened.incident]


def test_operational_resolves_the_incident_and_keeps_it_in_recent() -> None:
    """Back to operational: the incident gets its end time and moves to recent()."""
    book = IncidentBook()
    book.component_changed("carrier", DEGRADED, SCOPES, 1.0)
    book.component_changed("carrier", OUTAGE, SCOPES, 2.0)
    (change,) = book.component_changed("carrier", OK, SCOPES, 3.0)
    assert changes_of([change]) == [("resolved", 1, Severity.MAJOR, 3.0)]
    assert book.open_incidents() == []
    assert book.recent() == [change.incident]
    assert book.component_changed("carrier", OK, SCOPES, 4.0) == []


def test_a_new_outage_after_resolution_opens_a_new_incident() -> None:
    """An outage after the component recovered is a new incident with a new id."""
    book = IncidentBook()
    book.component_changed("carrier", OUTAGE, SCOPES, 1.0)
    book.component_changed("carrier", OK, SCOPES, 2.0)
    (change,) = book.component_changed("carrier", OUTAGE, SCOPES, 3.0)
    assert changes_of([change]) == [("opened", 2, Severity.MAJOR, None)]
    assert [i.incident_id for i in book.recent()] == [1]


def test_components_have_their_own_incidents() -> None:
    """Two failing components open two incidents; each one's recovery resolves only its own."""
    book = IncidentBook()
    book.component_changed("carrier", OUTAGE, ["emea"], 1.0)
    book.component_changed("pbx", DEGRADED, ["amer"], 2.0)
    assert changes_of(book.component_changed("pbx", OK, ["amer"], 3.0)) == [
        ("resolved", 2, Severity.MINOR, 3.0)
    ]
    assert [i.component for i in book.open_incidents()] == ["carrier"]


def test_a_hand_opened_incident_stays_open_until_resolved() -> None:
    """open() strips the title and keeps the scopes; only resolve() ends it."""
    book = IncidentBook()
    change = book.open("  Carrier maintenance tonight \n", Severity.CRITICAL, ["emea"], 10.0)
    assert change == IncidentChanged(
        Incident(
            1, "Carrier maintenance tonight", Severity.CRITICAL, None, frozenset({"emea"}), 10.0
        ),
        "opened",
    )
    book.component_changed("carrier", OUTAGE, ["emea"], 11.0)
    book.component_changed("carrier", OK, ["emea"], 12.0)
    assert [i.incident_id for i in book.open_incidents()] == [1]
    resolved = book.resolve(1, 20.0)
    assert changes_of([resolved]) == [("resolved", 1, Severity.CRITICAL, 20.0)]
    assert book.open_incidents() == []
    assert [i.incident_id for i in book.recent()] == [2, 1]


def test_a_hand_opened_incident_without_scopes_covers_every_scope() -> None:
    """open() with no scopes gives an empty scope set (every scope)."""
    change = IncidentBook().open("Planned maintenance", Severity.MINOR, (), 0.0)
    assert change.incident.scopes == frozenset()


def test_resolving_a_component_incident_by_hand_lets_the_next_failure_open_anew() -> None:
    """A component incident resolved by hand is forgotten; the next failure opens a new one."""
    book = IncidentBook()
    book.component_changed("carrier", OUTAGE, SCOPES, 1.0)
    book.resolve(1, 2.0)
    assert book.component_changed("carrier", OK, SCOPES, 3.0) == []
    assert changes_of(book.component_changed("carrier", DEGRADED, SCOPES, 4.0)) == [
        ("opened", 2, Severity.MINOR, None)
    ]


@pytest.mark.parametrize("incident_id", [2, 0, 1])
def test_resolving_an_unknown_incident_is_refused_and_changes_nothing(incident_id: int) -> None:
    """resolve() of an id that is not open (never opened, or already resolved) raises."""
    book = IncidentBook()
    book.component_changed("carrier", OUTAGE, SCOPES, 1.0)
    if incident_id == 1:
        book.component_changed("carrier", OK, SCOPES, 2.0)
    before = snapshot(book)
    with pytest.raises(InvalidInput, match="not an open incident") as caught:
        book.resolve(incident_id, 3.0)
    assert caught.value.field == "incident_id"
    assert snapshot(book) == before


@pytest.mark.parametrize(
    ("title", "severity", "scopes", "field"),
    [
        ("", Severity.MINOR, [], "title"),
        ("   ", Severity.MINOR, [], "title"),
        ("x" * 201, Severity.MINOR, [], "title"),
        (None, Severity.MINOR, [], "title"),
        ("Carrier down", "major", [], "severity"),
        ("Carrier down", None, [], "severity"),
        ("Carrier down", Severity.MAJOR, "emea", "scopes"),
        ("Carrier down", Severity.MAJOR, ["emea", "bad scope"], "scope"),
        ("Carrier down", Severity.MAJOR, [""], "scope"),
        ("Carrier down", Severity.MAJOR, [42], "scope"),
    ],
)
def test_bad_hand_opened_incidents_are_refused_and_change_nothing(
    title: Any, severity: Any, scopes: Any, field: str
) -> None:
    """A bad title, severity or scope list raises InvalidInput; no incident, no id used up."""
    book = IncidentBook()
    with pytest.raises(InvalidInput) as caught:
        book.open(title, severity, scopes, 1.0)
    assert caught.value.field == field
    assert snapshot(book) == ([], [])
    assert book.open("Carrier down", Severity.MAJOR, [], 2.0).incident.incident_id == 1


def test_a_title_of_exactly_the_limit_is_accepted() -> None:
    """A title of 200 characters is fine (the limit is inclusive)."""
    change = IncidentBook().open("x" * 200, Severity.MINOR, [], 0.0)
    assert len(change.incident.title) == 200


def test_a_bad_component_name_is_refused() -> None:
    """component_changed() checks the component name is an identifier."""
    book = IncidentBook()
    with pytest.raises(InvalidInput, match="identifier"):
        book.component_changed("bad name", OUTAGE, SCOPES, 1.0)
    assert snapshot(book) == ([], [])


def test_recent_keeps_the_newest_resolved_incidents_last() -> None:
    """recent() holds at most KEPT_RESOLVED incidents, the oldest dropped, newest last."""
    assert KEPT_RESOLVED == 100
    book = IncidentBook()
    extra = 5
    for n in range(KEPT_RESOLVED + extra):
        book.open(f"incident {n}", Severity.MINOR, [], float(n))
        book.resolve(n + 1, float(n) + 0.5)
    recent = book.recent()
    assert len(recent) == KEPT_RESOLVED
    assert [i.incident_id for i in recent] == list(range(extra + 1, KEPT_RESOLVED + extra + 1))
    assert "open=0" in repr(book)
    assert f"resolved={KEPT_RESOLVED}" in repr(book)


def test_open_incidents_are_listed_oldest_first() -> None:
    """open_incidents() is ordered by id, whatever the order of escalations."""
    book = IncidentBook()
    book.component_changed("carrier", DEGRADED, SCOPES, 1.0)
    book.open("Maintenance", Severity.MINOR, ["emea"], 2.0)
    book.component_changed("carrier", OUTAGE, SCOPES, 3.0)
    assert [i.incident_id for i in book.open_incidents()] == [1, 2]


def test_as_dict_is_json_ready_with_the_documented_keys() -> None:
    """as_dict() has id, title, severity, component, scopes, started, ended and dumps to JSON."""
    book = IncidentBook()
    (opened,) = book.component_changed("carrier", OUTAGE, ["emea", "amer"], 1.5)
    (resolved,) = book.component_changed("carrier", OK, ["emea", "amer"], 2.5)
    hand = book.open("Maintenance", Severity.CRITICAL, [], 3.0)
    assert opened.incident.as_dict() == {
        "id": 1,
        "title": "carrier is down",
        "severity": "major",
        "component": "carrier",
        "scopes": ["amer", "emea"],
        "started": 1.5,
        "ended": None,
    }
    assert resolved.incident.as_dict()["ended"] == 2.5
    for incident in (opened.incident, resolved.incident, hand.incident):
        assert json.loads(json.dumps(incident.as_dict())) == incident.as_dict()
    assert hand.incident.as_dict()["component"] is None
    assert hand.incident.as_dict()["severity"] == "critical"
