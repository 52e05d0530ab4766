"""`examples/regional_outage.py` runs and shows what the continuity features promise."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from callresilience.testing import FakeServiceNow

from .test_engine_examples import load, run

LINE = re.compile(r"\[\s*(\d+\.\d)s\] (.*)")


@pytest.fixture(scope="module")
def program() -> subprocess.CompletedProcess[str]:
    """The example, run once as a program, as a reader would."""
    return run("regional_outage")


@pytest.fixture(scope="module")
def timeline(program: subprocess.CompletedProcess[str]) -> list[tuple[float, str]]:
    """The example's timeline: (virtual seconds, text) per line, in order."""
    found = (LINE.fullmatch(line) for line in program.stdout.splitlines())
    return [(float(m[1]), m[2]) for m in found if m]


def at(timeline: list[tuple[float, str]], text: str) -> float:
    """When the first line starting with `text` was printed."""
    return next(t for t, line in timeline if line.startswith(text))


def test_the_example_exits_0_with_every_record_once(
    program: subprocess.CompletedProcess[str],
) -> None:
    """The program exits 0, and each call has one Interaction and one phone log, linked."""
    assert program.returncode == 0, program.stderr
    out = program.stdout
    assert out.splitlines()[-1] == "calls: 7, duplicates: 0, missing: 0"
    for call_id in ("emea-1", "emea-2", "emea-3", "emea-4", "amer-1", "amer-2", "amer-3"):
        assert re.search(rf"  {call_id}: Interaction IMS\d+ closed_complete, .* linked: True", out)
    assert "4155550100" not in out


def test_only_the_emea_scope_switches(timeline: list[tuple[float, str]]) -> None:
    """The EMEA carrier outage switches EMEA after enter_after; AMER agents hear nothing."""
    assert at(timeline, "INCIDENT #1 opened: carrier-emea is down (major; region:emea)") == 20.0
    modes = [(t, line) for t, line in timeline if line.startswith("MODE ")]
    assert modes == [
        (30.0, "MODE region:emea: normal -> resiliency (carrier-emea outage for 10 s)"),
        (120.0, "MODE region:emea: resiliency -> normal (healthy for 30 s)"),
    ]
    noticed = {line.split()[3].rstrip(":") for _, line in timeline if line.startswith("notice ")}
    assert noticed == {"anna", "bruno", "carla"}


def test_calls_flow_in_both_regions_during_the_outage(timeline: list[tuple[float, str]]) -> None:
    """EMEA calls are still offered; AMER's records are written at once, EMEA's wait."""
    assert at(timeline, "emea-2 connected to anna") == 37.0
    assert at(timeline, "emea-3 connected to bruno") == 87.0
    assert at(timeline, "amer-2: Interaction created") == 42.0
    assert at(timeline, "emea-2: open_interaction raised ItsmUnavailable") == 45.0
    assert at(timeline, "emea-2: Interaction created") == 120.0
    assert at(timeline, "emea-3: Interaction created") == 120.0
    assert at(timeline, "status: journal depth 4, held groups: region:emea") == 68.0


def test_a_busy_agent_is_told_after_the_call(timeline: list[tuple[float, str]]) -> None:
    """Bruno, on a call at the switch, gets his notice when that call ends, not before."""
    assert at(timeline, "notice 1 to anna: region:emea: switch to resiliency") == 30.0
    ended = at(timeline, "emea-1 ended (bruno talked 60 s)")
    assert ended == 67.0
    assert at(timeline, "notice 2 to bruno: region:emea: switch to resiliency") == ended
    assert at(timeline, "bruno acknowledges notice 2") == 70.0


def test_an_unacknowledged_notice_is_forced(timeline: list[tuple[float, str]]) -> None:
    """Carla, on a break, does not acknowledge: notice_deadline later it is sent as forced."""
    assert at(timeline, "notice 3 to carla: region:emea: switch to resiliency") == 30.0
    assert at(timeline, "notice 3 to carla: Now: region:emea: switch to resiliency") == 60.0
    assert at(timeline, "carla's desktop switched to resiliency mode") == 60.0
    assert not any(line.startswith("carla acknowledges notice 3") for _, line in timeline)


def test_the_return_to_normal(timeline: list[tuple[float, str]]) -> None:
    """leave_after after the carrier is back, EMEA is normal, told, and can transfer again."""
    assert at(timeline, "INCIDENT #1 resolved: carrier-emea is down") == 90.0
    back = [line for t, line in timeline if "back to normal mode" in line]
    assert back == [
        f"notice {n} to {agent_id}: region:emea: back to normal mode (healthy for 30 s)."
        for n, agent_id in ((4, "anna"), (5, "bruno"), (6, "carla"))
    ]
    assert at(timeline, "notice 4 to anna: region:emea: back to normal") == 120.0
    for n, agent_id in ((4, "anna"), (5, "bruno"), (6, "carla")):
        assert at(timeline, f"{agent_id} acknowledges notice {n}") == 123.0
    assert at(timeline, "anna transfers emea-4 to billing (Interaction ") == 135.0


def test_the_final_status_summary(program: subprocess.CompletedProcess[str]) -> None:
    """The summary shows every scope normal, the incident resolved and the journal empty."""
    block = program.stdout.split("Status at the end:\n", 1)[1].split("\n\n", 1)[0]
    assert block.splitlines() == [
        "  modes: default normal, region:amer normal, region:emea normal",
        "  components: carrier-emea operational, servicenow operational",
        "  incidents: 0 open, 1 resolved (#1 carrier-emea is down, major)",
        "  agents: 5 idle",
        "  notices outstanding: 0",
        "  journal: depth 0, done 28, dead 0, held groups: none",
        "  breakers: https://example.service-now.com closed",
    ]


@pytest.mark.anyio
async def test_the_json_snapshot_in_the_middle_of_the_outage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With --json the snapshot taken at t=68 s shows EMEA held and bruno's notice pending."""
    assert await load("regional_outage").run(show_json=True) == 0
    out = capsys.readouterr().out
    text = out.split("Status snapshot at t=68 s:\n", 1)[1].rsplit("\n\ncalls:", 1)[0]
    snapshot = json.loads(text)
    assert snapshot["modes"] == {
        "default": "normal",
        "region:amer": "normal",
        "region:emea": "resiliency",
    }
    assert snapshot["journal"]["held_groups"] == ["region:emea"]
    assert [i["title"] for i in snapshot["incidents"]["open"]] == ["carrier-emea is down"]
    assert [(n["agent_id"], n["delivered"]) for n in snapshot["notices"]] == [("bruno", True)]
    assert snapshot["agents"] == {"idle": 2, "not_ready": 1, "on_call": 2}


def test_the_check_counts_duplicates_and_missing_records() -> None:
    """The example's own check fails on a duplicated Interaction or a missing phone log."""
    module = load("regional_outage")
    fake = FakeServiceNow()
    for _ in range(2):
        fake.insert(module.INTERACTION, {"correlation_id": "amer-1", "state": "closed_complete"})
    lines, duplicates, missing = module.check(fake)
    assert duplicates == 1
    assert missing == 2 * len(module.CALLS) - 1  # a phone log and an Interaction per call
    assert lines[1] == "  amer-1: MISSING (0 phone logs, 2 Interactions)"
