"""The notice board: agents told of mode changes, idle ones at once, busy ones after the call."""

from __future__ import annotations

import json
from typing import Any

import attrs
import hypothesis.strategies as st
import pytest
from hypothesis import given

from callresilience import InvalidInput
from callresilience.health import Mode, ModeChanged, ModeNotice, NoticeBoard

NORMAL, RESILIENCY = Mode.NORMAL, Mode.RESILIENCY
DEADLINE = 30.0


def change(scope: str, new: Mode, at: float = 0.0, reason: str = "carrier outage") -> ModeChanged:
    """The scope switching to `new` (from the other mode)."""
    old = NORMAL if new is RESILIENCY else RESILIENCY
    return ModeChanged(scope, old, new, at, reason)


def told(notices: list[ModeNotice]) -> list[tuple[str, str, Mode, bool]]:
    """Each notice as (agent, scope, mode, forced)."""
    return [(n.agent_id, n.scope, n.mode, n.forced) for n in notices]


def told_resiliency(board: NoticeBoard, agent_id: str = "ann", now: float = 0.0) -> ModeNotice:
    """Switch emea to resiliency with `agent_id` idle; return the notice it got at once."""
    (notice,) = board.mode_changed(change("emea", RESILIENCY, now), [(agent_id, False)], now)
    return notice


def test_idle_agents_are_told_at_once_and_busy_ones_after_their_call() -> None:
    """An idle agent's notice is returned at once; a busy one's waits for agent_free()."""
    board = NoticeBoard(DEADLINE)
    sent = board.mode_changed(
        change("emea", RESILIENCY, reason="pbx down"), [("ann", False), ("bob", True)], 5.0
    )
    assert sent == [ModeNotice("ann", 1, "emea", RESILIENCY, "pbx down")]
    assert board.waiting_for_call_end() == {"bob"}
    assert board.agent_free("ann", 6.0) == []
    assert board.agent_free("bob", 7.0) == [ModeNotice("bob", 2, "emea", RESILIENCY, "pbx down")]
    assert board.waiting_for_call_end() == set()
    assert board.agent_free("bob", 8.0) == []


def test_an_unacknowledged_notice_is_forced_once_at_its_deadline() -> None:
    """Delivered and not acknowledged: sent again, forced, with the same id, deadline s later."""
    board = NoticeBoard(DEADLINE)
    notice = told_resiliency(board, now=10.0)
    assert board.next_deadline() == 40.0
    assert board.advance(39.9) == []
    assert board.advance(40.0) == [attrs.evolve(notice, forced=True)]
    assert board.advance(1_000.0) == []
    assert board.next_deadline() is None
    assert board.outstanding() == []


def test_the_deadline_of_a_held_notice_runs_from_its_delivery() -> None:
    """A notice held for a call has no deadline until delivered; then deadline s from then."""
    board = NoticeBoard(DEADLINE)
    board.mode_changed(change("emea", RESILIENCY), [("bob", True)], 0.0)
    assert board.next_deadline() is None
    assert board.advance(1_000.0) == []
    (notice,) = board.agent_free("bob", 1_000.0)
    assert board.next_deadline() == 1_030.0
    assert board.advance(1_030.0) == [attrs.evolve(notice, forced=True)]


def test_next_deadline_is_the_earliest_of_all() -> None:
    """With several notices delivered, next_deadline() is the first one to be forced."""
    board = NoticeBoard(DEADLINE)
    told_resiliency(board, "bob", now=20.0)
    first = told_resiliency(board, "ann", now=10.0)
    assert board.next_deadline() == 40.0
    assert told(board.advance(40.0)) == told([attrs.evolve(first, forced=True)])
    assert board.next_deadline() == 50.0


def test_acknowledging_all_prevents_forcing() -> None:
    """acknowledge(agent) clears every delivered notice of the agent and says how many."""
    board = NoticeBoard(DEADLINE)
    board.mode_changed(change("emea", RESILIENCY), [("ann", False), ("bob", False)], 0.0)
    board.mode_changed(change("amer", RESILIENCY), [("ann", False)], 0.0)
    assert board.acknowledge("ann") == 2
    assert board.acknowledge("ann") == 0
    assert told(board.advance(1_000.0)) == [("bob", "emea", RESILIENCY, True)]


def test_acknowledging_one_notice_leaves_the_others() -> None:
    """acknowledge(agent, notice_id) clears that notice only; the other is still forced."""
    board = NoticeBoard(DEADLINE)
    (emea,) = board.mode_changed(change("emea", RESILIENCY), [("ann", False)], 0.0)
    (amer,) = board.mode_changed(change("amer", RESILIENCY), [("ann", False)], 0.0)
    assert board.acknowledge("ann", emea.notice_id) == 1
    assert board.advance(1_000.0) == [attrs.evolve(amer, forced=True)]


def test_acknowledging_a_notice_that_is_not_outstanding_is_refused() -> None:
    """An unknown id, another agent's or a held one: InvalidInput; an acknowledged one: 0."""
    board = NoticeBoard(DEADLINE)
    ann = told_resiliency(board, "ann")
    board.mode_changed(change("emea", RESILIENCY), [("bob", True)], 0.0)
    held_id = board.outstanding()[1]["notice_id"]  # bob's, held for his call
    cy = told_resiliency(board, "cy")
    board.acknowledge("cy", cy.notice_id)
    before = board.outstanding()
    for agent_id, notice_id in [
        ("ann", 99),
        ("bob", ann.notice_id),
        ("bob", held_id),
    ]:
        with pytest.raises(InvalidInput, match="not a notice") as caught:
            board.acknowledge(agent_id, notice_id)
        assert caught.value.field == "notice_id"
    assert board.acknowledge("cy", cy.notice_id) == 0
    assert board.outstanding() == before
    assert board.waiting_for_call_end() == {"bob"}


def test_a_held_notice_is_replaced_by_a_newer_change() -> None:
    """Two changes during one call: the agent gets only the newer notice after the call."""
    board = NoticeBoard(DEADLINE)
    board.mode_changed(change("emea", RESILIENCY, reason="in force at login"), [("bob", True)], 0)
    board.mode_changed(change("emea", RESILIENCY, reason="carrier down"), [("bob", True)], 1)
    (notice,) = board.agent_free("bob", 2.0)
    assert (notice.notice_id, notice.reason) == (2, "carrier down")
    assert len(board.outstanding()) == 1


def test_an_outage_during_a_call_needs_no_notice() -> None:
    """Resiliency then normal again during a call: the held notice is dropped, nothing sent."""
    board = NoticeBoard(DEADLINE)
    board.mode_changed(change("emea", RESILIENCY), [("bob", True)], 0.0)
    assert board.mode_changed(change("emea", NORMAL), [("bob", True)], 1.0) == []
    assert board.waiting_for_call_end() == set()
    assert board.outstanding() == []
    assert board.agent_free("bob", 2.0) == []


def test_a_change_back_during_a_call_drops_the_notice_to_the_mode_last_told() -> None:
    """Told resiliency, then normal and resiliency again during a call: nothing to say."""
    board = NoticeBoard(DEADLINE)
    notice = told_resiliency(board, "bob")
    board.acknowledge("bob", notice.notice_id)
    board.mode_changed(change("emea", NORMAL), [("bob", True)], 1.0)
    assert board.waiting_for_call_end() == {"bob"}
    board.mode_changed(change("emea", RESILIENCY), [("bob", True)], 2.0)
    assert board.outstanding() == []
    assert board.agent_free("bob", 3.0) == []


def test_an_agent_who_did_not_acknowledge_is_told_of_the_switch_back() -> None:
    """Told resiliency, no acknowledgement, back to normal: the normal notice replaces it."""
    board = NoticeBoard(DEADLINE)
    told_resiliency(board, now=0.0)
    (back,) = board.mode_changed(change("emea", NORMAL, reason="healthy"), [("ann", False)], 10)
    assert (back.mode, back.reason, back.forced) == (NORMAL, "healthy", False)
    assert [o["notice_id"] for o in board.outstanding()] == [back.notice_id]
    assert board.advance(30.0) == []
    assert board.advance(40.0) == [attrs.evolve(back, forced=True)]


def test_an_agent_who_did_not_acknowledge_hears_of_the_switch_back_after_the_call() -> None:
    """Told resiliency, not acknowledged, then busy: the normal notice waits for the call end."""
    board = NoticeBoard(DEADLINE)
    told_resiliency(board)
    assert board.mode_changed(change("emea", NORMAL), [("ann", True)], 5.0) == []
    assert board.waiting_for_call_end() == {"ann"}
    assert told(board.agent_free("ann", 6.0)) == [("ann", "emea", NORMAL, False)]


def test_agent_gone_drops_everything_for_that_agent() -> None:
    """A logged-out agent's held and delivered notices are dropped; others' are kept."""
    board = NoticeBoard(DEADLINE)
    board.mode_changed(change("emea", RESILIENCY), [("ann", False), ("bob", False)], 0.0)
    board.mode_changed(change("amer", RESILIENCY), [("ann", True)], 0.0)
    board.agent_gone("ann")
    assert [o["agent_id"] for o in board.outstanding()] == ["bob"]
    assert board.waiting_for_call_end() == set()
    assert board.agent_free("ann", 1.0) == []
    assert told(board.advance(1_000.0)) == [("bob", "emea", RESILIENCY, True)]
    with pytest.raises(InvalidInput):
        board.acknowledge("ann", 1)


def test_a_forced_notice_can_still_be_acknowledged() -> None:
    """Acknowledging the forced banner's id is accepted and counts nothing more."""
    board = NoticeBoard(DEADLINE)
    notice = told_resiliency(board, "ann")
    (forced,) = board.advance(1_000.0)
    assert forced.notice_id == notice.notice_id
    assert board.acknowledge("ann", forced.notice_id) == 0


def test_outstanding_lists_every_unacknowledged_notice_json_ready() -> None:
    """outstanding() has one JSON-ready dict per notice, by agent then scope."""
    board = NoticeBoard(DEADLINE)
    board.mode_changed(change("emea", RESILIENCY), [("bob", False), ("ann", True)], 5.0)
    board.mode_changed(change("amer", RESILIENCY), [("ann", False)], 6.0)
    expected: list[dict[str, Any]] = [
        {
            "agent_id": "ann",
            "notice_id": 3,
            "scope": "amer",
            "mode": "resiliency",
            "delivered": True,
            "force_at": 36.0,
        },
        {
            "agent_id": "ann",
            "notice_id": 2,
            "scope": "emea",
            "mode": "resiliency",
            "delivered": False,
            "force_at": None,
        },
        {
            "agent_id": "bob",
            "notice_id": 1,
            "scope": "emea",
            "mode": "resiliency",
            "delivered": True,
            "force_at": 35.0,
        },
    ]
    assert board.outstanding() == expected
    assert json.loads(json.dumps(board.outstanding())) == expected
    assert repr(board) == "<NoticeBoard waiting=3>"


@pytest.mark.parametrize("deadline", [0, -1.0, float("nan")])
def test_a_deadline_must_be_positive(deadline: float) -> None:
    """NoticeBoard(deadline) refuses zero, negative and NaN deadlines."""
    with pytest.raises(InvalidInput, match="deadline") as caught:
        NoticeBoard(deadline)
    assert caught.value.field == "deadline"


# Bugs.


def test_an_agent_logging_back_in_is_told_again() -> None:
    """Logged out and back in while the scope stays in resiliency: the agent is told again."""
    board = NoticeBoard(DEADLINE)
    first = told_resiliency(board)
    board.acknowledge("ann", first.notice_id)
    board.agent_gone("ann")
    login = change("emea", RESILIENCY, 10.0, reason="in force at login")
    assert told(board.mode_changed(login, [("ann", False)], 10.0)) == [
        ("ann", "emea", RESILIENCY, False)
    ]


def test_a_delivered_notice_is_still_forced_after_a_change_that_came_and_went() -> None:
    """Told resiliency, no acknowledgement, normal and back during a call: still forced."""
    board = NoticeBoard(DEADLINE)
    told_resiliency(board)
    board.mode_changed(change("emea", NORMAL, 5.0), [("ann", True)], 5.0)
    board.mode_changed(change("emea", RESILIENCY, 10.0), [("ann", True)], 10.0)
    sent = board.agent_free("ann", 20.0) + board.advance(1_000.0)
    assert ("ann", "emea", RESILIENCY, True) in told(sent)


# Properties.

AGENTS = {"ann": ("emea", "amer"), "bob": ("emea",), "cy": ("amer",)}
SCOPES = ("emea", "amer")

steps = st.lists(
    st.one_of(
        st.tuples(st.just("change"), st.sampled_from(SCOPES)),
        st.tuples(st.just("toggle"), st.sampled_from(sorted(AGENTS))),
        st.tuples(st.just("ack"), st.sampled_from(sorted(AGENTS)), st.booleans()),
        st.tuples(st.just("wait"), st.integers(0, 45)),
    ),
    max_size=80,
)


@attrs.define
class Model:
    """What the test knows: modes, who is busy, what was sent when."""

    board: NoticeBoard = attrs.field(factory=lambda: NoticeBoard(DEADLINE))
    now: float = 0.0
    modes: dict[str, Mode] = attrs.field(factory=lambda: dict.fromkeys(SCOPES, NORMAL))
    busy: dict[str, bool] = attrs.field(factory=lambda: dict.fromkeys(AGENTS, False))
    # (agent, scope) pairs changed while the agent was on a call it has not finished.
    stale: set[tuple[str, str]] = attrs.field(factory=set)
    delivered_at: dict[int, float] = attrs.field(factory=dict)
    forced: set[int] = attrs.field(factory=set)
    last_told: dict[tuple[str, str], Mode] = attrs.field(factory=dict)

    def record(self, notices: list[ModeNotice]) -> None:
        """Check and remember notices sent at `now`."""
        for notice in notices:
            assert notice.scope in AGENTS[notice.agent_id]
            if notice.forced:
                assert notice.notice_id not in self.forced, "forced twice"
                assert self.now >= self.delivered_at[notice.notice_id] + DEADLINE, "forced early"
                self.forced.add(notice.notice_id)
            else:
                assert notice.notice_id not in self.delivered_at, "delivered twice"
                self.delivered_at[notice.notice_id] = self.now
            self.last_told[notice.agent_id, notice.scope] = notice.mode

    def switch(self, scope: str) -> None:
        """The scope flips mode; its agents are told, or held for."""
        new = NORMAL if self.modes[scope] is RESILIENCY else RESILIENCY
        self.modes[scope] = new
        agents = [(a, self.busy[a]) for a, scopes in sorted(AGENTS.items()) if scope in scopes]
        self.stale |= {(a, scope) for a, busy in agents if busy}
        self.record(self.board.mode_changed(change(scope, new, self.now), agents, self.now))

    def free(self, agent_id: str) -> None:
        """The agent's call is over."""
        self.busy[agent_id] = False
        self.stale -= {(agent_id, scope) for scope in SCOPES}
        self.record(self.board.agent_free(agent_id, self.now))

    def acknowledge(self, agent_id: str, by_id: bool) -> None:
        """The agent acknowledges all, or its first delivered notice by id."""
        mine = [
            o["notice_id"]
            for o in self.board.outstanding()
            if o["agent_id"] == agent_id and o["delivered"]
        ]
        if by_id and mine:
            assert self.board.acknowledge(agent_id, mine[0]) == 1
        else:
            assert self.board.acknowledge(agent_id) == len(mine)

    def wait(self, seconds: int) -> None:
        """Time passes; due notices are forced, exactly when next_deadline() said."""
        due = self.board.next_deadline()
        self.now += seconds
        sent = self.board.advance(self.now)
        assert bool(sent) == (due is not None and due <= self.now)
        self.record(sent)

    def check_told(self) -> None:
        """Agents free since a scope's last change were last told its current mode."""
        for agent_id, scopes in AGENTS.items():
            for scope in scopes:
                if (agent_id, scope) not in self.stale:
                    assert self.last_told.get((agent_id, scope), NORMAL) is self.modes[scope]


@given(steps=steps)
def test_notices_keep_their_promises(steps: list[tuple[Any, ...]]) -> None:
    """Random changes, calls, acknowledgements and waits never break the board's promises."""
    model = Model()
    for step in steps:
        if step[0] == "change":
            model.switch(step[1])
        elif step[0] == "toggle":
            if model.busy[step[1]]:
                model.free(step[1])
            else:
                model.busy[step[1]] = True
        elif step[0] == "ack":
            model.acknowledge(step[1], step[2])
        else:
            model.wait(step[1])
        model.check_told()
    for agent_id in sorted(AGENTS):
        if model.busy[agent_id]:
            model.free(agent_id)
        model.board.acknowledge(agent_id)
    model.check_told()
    assert model.board.outstanding() == []
    assert model.board.waiting_for_call_end() == set()
    assert model.board.next_deadline() is None
