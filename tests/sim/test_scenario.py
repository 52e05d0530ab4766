"""The scenario's pure parts: durations, windows, faults, distributions, arrivals."""

from __future__ import annotations

import pytest

from callresilience.cli import main
from callresilience.sim import (
    FaultSpec,
    Scenario,
    ScenarioError,
    arrivals,
    parse_distribution,
    parse_fault,
    parse_seconds,
    parse_window,
)
from callresilience.testing import (
    DropResponse,
    Hibernating,
    Latency,
    RateLimit,
    RefuseConnections,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("20s", 20), ("90", 90), ("1m30s", 90), ("1.5m", 90), ("300ms", 0.3), ("1h", 3600)],
)
def test_durations_parse(text: str, seconds: float) -> None:
    """Seconds, minutes, hours and milliseconds, alone or combined."""
    assert parse_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "-5s", "5x", "s", "inf", "nan", "5s10"])
def test_bad_durations_say_what_to_give(text: str) -> None:
    """A bad duration raises ScenarioError naming the accepted forms."""
    with pytest.raises(ScenarioError, match="20s, 1m30s"):
        parse_seconds(text)


def test_window_is_duration_at_start() -> None:
    """`20s@10s` lasts 20 s from 10 s into the run."""
    assert parse_window("20s@10s") == (10.0, 20.0)
    assert parse_fault("outage", "20s@10s") == FaultSpec("outage", 10.0, 20.0)


@pytest.mark.parametrize("text", ["20s", "@10s", "20s@", "0s@10s", "x@10s", "20s@y"])
def test_bad_windows_are_refused(text: str) -> None:
    """Missing parts, a zero duration or bad numbers raise ScenarioError."""
    with pytest.raises(ScenarioError):
        parse_window(text, what="--outage")


def test_each_fault_kind_builds_its_fake_fault() -> None:
    """Outage, hibernation, latency, rate limit and ambiguous commits map onto the fake."""
    assert isinstance(parse_fault("outage", "5s@1s").fault(), RefuseConnections)
    assert isinstance(parse_fault("hibernate", "5s@1s").fault(), Hibernating)
    latency = parse_fault("latency", "300ms")
    assert (latency.value, latency.duration) == (0.3, None)
    assert isinstance(latency.fault(), Latency)
    limited = parse_fault("rate-limit", "5/s:30s@20s")
    assert (limited.value, limited.per, limited.start, limited.duration) == (5, "second", 20, 30)
    fault = limited.fault()
    assert isinstance(fault, RateLimit)
    assert parse_fault("rate-limit", "3000/h").per == "hour"
    ambiguous = parse_fault("ambiguous", "0.2:40s@10s")
    assert (ambiguous.value, ambiguous.end) == (0.2, 50)
    assert isinstance(ambiguous.fault(), DropResponse)


@pytest.mark.parametrize(
    ("kind", "text", "match"),
    [
        ("latency", "0s", "latency > 0"),
        ("latency", "fast", "not a duration"),
        ("rate-limit", "5", "per second or per hour"),
        ("rate-limit", "0/s", "per second or per hour"),
        ("ambiguous", "1.5", r"in \(0, 1\]"),
        ("ambiguous", "lots", r"in \(0, 1\]"),
        ("ambiguous", "0.2:40s", "DURATION@START"),
        ("quake", "1", "unknown fault"),
    ],
)
def test_bad_fault_values_are_refused(kind: str, text: str, match: str) -> None:
    """Each fault's value is checked, with a message saying what to give."""
    with pytest.raises(ScenarioError, match=match):
        parse_fault(kind, text)


def test_fault_descriptions_and_windows() -> None:
    """A fault knows when it is active and describes itself."""
    outage = FaultSpec("outage", 10, 20)
    assert (outage.active(9.9), outage.active(10), outage.active(29.9), outage.active(30)) == (
        False,
        True,
        True,
        False,
    )
    assert outage.describe() == "outage (connections refused) 10s-30s"
    assert parse_fault("rate-limit", "5/h").describe() == "rate limit 5/h 0s-end"
    assert "latency 300 ms" in parse_fault("latency", "300ms").describe()
    assert "20%" in parse_fault("ambiguous", "0.2").describe()
    assert "hibernating" in parse_fault("hibernate", "1s@1s").describe()


def test_scenario_knows_when_the_instance_is_down_and_when_it_recovered() -> None:
    """Unavailable windows, any fault, and the end of the last fault (open-ended: cleared)."""
    scenario = Scenario(
        faults=(FaultSpec("outage", 10, 20), FaultSpec("latency", 0, None, 0.3)),
    )
    assert scenario.unavailable_at(15)
    assert not scenario.unavailable_at(31)
    assert scenario.faulty_at(31)
    assert scenario.last_fault_end(cleared_at=100) == 100
    assert Scenario(faults=(FaultSpec("outage", 10, 20),)).last_fault_end(100) == 30
    assert Scenario(faults=()).last_fault_end(100) is None


@pytest.mark.parametrize(
    ("text", "kind", "average"),
    [("20s", "fixed", 20), ("10s-40s", "uniform", 25), ("exp:20s", "exponential", 20)],
)
def test_distributions_parse(text: str, kind: str, average: float) -> None:
    """Fixed, uniform and exponential distributions from the command line."""
    distribution = parse_distribution(text)
    assert (distribution.kind, distribution.average()) == (kind, average)


@pytest.mark.parametrize("text", ["40s-10s", "exp:0s", "often", "exp:x"])
def test_bad_distributions_are_refused(text: str) -> None:
    """Reversed ranges, a zero mean and nonsense raise ScenarioError."""
    with pytest.raises(ScenarioError):
        parse_distribution(text)


def test_arrivals_are_seeded_and_within_the_duration() -> None:
    """The same seed gives the same callers, all arriving before the end, with unique ids."""
    scenario = Scenario(seed=4, duration=100, rate=0.5)
    first, again = arrivals(scenario), arrivals(scenario)
    assert first == again
    assert first != arrivals(Scenario(seed=5, duration=100, rate=0.5))
    assert all(0 < a.at < 100 for a in first)
    assert len({a.call_id for a in first}) == len(first) > 20


@pytest.mark.parametrize(
    "bad", [{"speed": 0}, {"agents": 0}, {"agents": True}, {"rate": -1}, {"leave_after": -1}]
)
def test_bad_scenario_values_are_refused(bad: dict[str, float]) -> None:
    """Scenario settings out of range raise ScenarioError."""
    with pytest.raises(ScenarioError):
        Scenario(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--outage", "20s"], "DURATION@START"),
        (["--outage", "0s@10s"], "lasts 0 s"),
        (["--latency", "fast"], "not a duration"),
        (["--rate-limit", "5"], "per second or per hour"),
        (["--ambiguous", "2"], "chance"),
        (["--speed", "0"], "between"),
        (["--talk", "40s-10s"], "LOW <= HIGH"),
        (["--duration", "soon"], "not a duration"),
    ],
)
def test_bad_options_exit_2_with_a_clear_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad values stop the command before it runs, with exit status 2 and the reason."""
    with pytest.raises(SystemExit) as stopped:
        main(["simulate", *argv])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--no-faults", "--outage", "5s@1s"], "--no-faults"),
        (["--accept", "0.8", "--reject", "0.5"], "at most 1"),
        (["--agents", "0"], "agents"),
    ],
)
def test_inconsistent_options_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Options that cannot go together return 2 and say why."""
    assert main(["simulate", *argv]) == 2
    assert message in capsys.readouterr().err
