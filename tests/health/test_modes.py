"""The mode controller: resiliency per scope, with hysteresis, on time passed in."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import given

from callresilience import InvalidInput
from callresilience.health import ComponentStatus, Mode, ModeChanged, ModeConfig, ModeController

OUTAGE, OK, DEGRADED = ComponentStatus.OUTAGE, ComponentStatus.OPERATIONAL, ComponentStatus.DEGRADED
NORMAL, RESILIENCY = Mode.NORMAL, Mode.RESILIENCY


def controller(**config: float | bool) -> ModeController:
    """Two regions: the instance serves both, each region has its own carrier."""
    modes = ModeController(ModeConfig(enter_after=10, leave_after=60, **config))  # type: ignore[arg-type]
    modes.register("servicenow", ["emea", "amer"], 0)
    modes.register("carrier-emea", ["emea"], 0)
    modes.register("carrier-amer", ["amer"], 0)
    return modes


def test_an_outage_switches_its_scopes_after_enter_after() -> None:
    """A component failing for enter_after seconds switches every scope that depends on it."""
    modes = controller()
    assert modes.report("carrier-emea", OUTAGE, 100) == []
    assert modes.next_deadline() == 110
    assert modes.advance(109.9) == []
    assert modes.advance(110) == [
        ModeChanged("emea", NORMAL, RESILIENCY, 110, "carrier-emea outage for 10 s")
    ]
    assert modes.mode("amer") is NORMAL
    assert modes.modes() == {"amer": "normal", "emea": "resiliency"}


def test_an_urgent_report_switches_at_once() -> None:
    """The breaker opening is reason enough: both regions switch without waiting."""
    modes = controller()
    changes = modes.report("servicenow", OUTAGE, 5, urgent=True)
    assert [(c.scope, c.new) for c in changes] == [("amer", RESILIENCY), ("emea", RESILIENCY)]


def test_recovery_switches_back_only_after_leave_after() -> None:
    """Healthy again: the scope stays in resiliency for leave_after seconds, then returns."""
    modes = controller()
    modes.report("servicenow", OUTAGE, 0, urgent=True)
    modes.report("servicenow", OK, 30)
    assert modes.advance(89) == []
    (first, second) = modes.advance(90)
    assert (first.new, first.reason) == (NORMAL, "healthy for 60 s")
    assert second.new is NORMAL


def test_short_failures_do_not_switch_and_short_recoveries_do_not_return() -> None:
    """Failures shorter than enter_after never switch; blips of health never switch back."""
    modes = controller()
    for t in range(0, 200, 10):
        modes.report("carrier-emea", OUTAGE, t)
        modes.report("carrier-emea", OK, t + 5)
    assert modes.mode("emea") is NORMAL
    modes.report("carrier-emea", OUTAGE, 300, urgent=True)
    for t in range(310, 500, 20):
        modes.report("carrier-emea", OK, t)
        modes.report("carrier-emea", OUTAGE, t + 10)
    assert modes.mode("emea") is RESILIENCY


@given(reports=st.lists(st.tuples(st.floats(0, 30), st.booleans()), min_size=1, max_size=50))
def test_no_flapping_within_the_hysteresis(reports: list[tuple[float, bool]]) -> None:
    """Whatever the sequence, two switches of one scope are never closer than enter_after."""
    modes = controller()
    now, last_switch = 0.0, None
    for step, failing in reports:
        now += step
        for change in modes.report("carrier-amer", OUTAGE if failing else OK, now):
            if change.scope == "amer":
                if last_switch is not None:
                    assert change.at - last_switch >= 10
                last_switch = change.at


def test_degraded_counts_only_when_configured() -> None:
    """Degraded is failing only with degraded_counts=True."""
    lenient, strict = controller(), controller(degraded_counts=True)
    for modes in (lenient, strict):
        modes.report("carrier-amer", DEGRADED, 0)
        modes.advance(20)
    assert lenient.mode("amer") is NORMAL
    assert strict.mode("amer") is RESILIENCY


def test_an_operator_can_force_and_release_a_mode() -> None:
    """A forced mode holds whatever the health; releasing it returns to the computed one."""
    modes = controller()
    (change,) = modes.force("amer", RESILIENCY, 1)
    assert change.reason == "forced by an operator"
    modes.report("servicenow", OK, 2)
    assert modes.advance(1_000) == []
    assert modes.next_deadline() is None
    (back,) = modes.force("amer", None, 1_001)
    assert back.new is NORMAL


def test_unknown_components_and_bad_names_are_refused() -> None:
    """Reporting an unregistered component or registering without scopes is a typed error."""
    modes = controller()
    with pytest.raises(InvalidInput, match="not registered"):
        modes.report("pbx", OUTAGE, 0)
    with pytest.raises(InvalidInput, match="at least one scope"):
        modes.register("pbx", [], 0)
    with pytest.raises(InvalidInput, match="identifier"):
        modes.register("pbx", ["emea^ORx"], 0)
    assert modes.component("servicenow") is OK
    assert "emea" in repr(modes)
    assert modes.mode("nowhere") is NORMAL


# Registration.


def test_a_component_for_every_scope_covers_scopes_added_later() -> None:
    """register(component, None) covers every scope, including those added afterwards."""
    modes = ModeController(ModeConfig(enter_after=10, leave_after=60))
    modes.add_scope("emea")
    modes.register("servicenow", None, 0)
    modes.add_scope("amer")
    assert modes.scopes_of("servicenow") == {"emea", "amer"}
    changes = modes.report("servicenow", OUTAGE, 1, urgent=True)
    assert [(c.scope, c.new) for c in changes] == [("amer", RESILIENCY), ("emea", RESILIENCY)]
    modes.add_scope("apac")
    assert modes.advance(2) == [ModeChanged("apac", NORMAL, RESILIENCY, 2, "servicenow is down")]
    assert modes.components()["servicenow"]["scopes"] is None


def test_registering_again_changes_only_the_scopes() -> None:
    """A known component registered again keeps its status and since; only its scopes change."""
    modes = controller()
    modes.report("carrier-emea", DEGRADED, 5)
    modes.register("carrier-emea", ["emea", "apac"], 50)
    assert modes.component("carrier-emea") is DEGRADED
    assert modes.components()["carrier-emea"] == {
        "status": "degraded",
        "since": 5,
        "scopes": ["apac", "emea"],
    }
    assert modes.scopes_of("carrier-emea") == {"emea", "apac"}
    assert modes.mode("apac") is NORMAL
    modes.register("carrier-emea", None, 60)
    assert modes.scopes_of("carrier-emea") == {"emea", "amer", "apac"}


def test_components_and_scopes_of_report_every_component() -> None:
    """components() is JSON-ready, by name; scopes_of() gives the scopes a component serves."""
    modes = controller()
    modes.report("carrier-amer", OUTAGE, 7)
    assert modes.components() == {
        "carrier-amer": {"status": "outage", "since": 7, "scopes": ["amer"]},
        "carrier-emea": {"status": "operational", "since": 0, "scopes": ["emea"]},
        "servicenow": {"status": "operational", "since": 0, "scopes": ["amer", "emea"]},
    }
    assert list(modes.components()) == ["carrier-amer", "carrier-emea", "servicenow"]
    assert modes.scopes_of("carrier-amer") == frozenset({"amer"})
    with pytest.raises(InvalidInput, match="not registered"):
        modes.scopes_of("pbx")


def test_a_string_for_scopes_is_refused() -> None:
    """register(component, "emea") raises instead of reading the string as letters."""
    modes = controller()
    with pytest.raises(InvalidInput, match="give a list of scope names") as caught:
        modes.register("pbx", "emea", 0)
    assert caught.value.field == "scopes"
    assert not modes.is_registered("pbx")
    assert modes.modes() == {"amer": "normal", "emea": "normal"}


def test_is_registered_says_whether_a_component_is_known() -> None:
    """is_registered() is True only for registered components."""
    modes = controller()
    assert modes.is_registered("servicenow")
    assert not modes.is_registered("pbx")
    modes.register("pbx", None, 0)
    assert modes.is_registered("pbx")
