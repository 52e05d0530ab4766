"""Events the routing state does not allow: a typed error, and the state exactly as before."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from callresilience import (
    Agent,
    AgentStateError,
    CallResilienceError,
    CallStateError,
    DuplicateCall,
    InvalidInput,
    OfferNotPending,
    UnknownAgent,
    UnknownCall,
)
from callresilience.routing import Router

from .conftest import ALICE, CONFIG, call


def offered() -> Router:
    """alice ready and ringing for c1 (deadline 21); bob logged in, not ready; c9 finished."""
    r = Router(CONFIG)
    r.login(ALICE, 0.0, ready=True)
    r.login(Agent("bob", queues=["sales"]), 0.0)
    r.arrive(call("c9"), 0.0)
    r.accept("c9", "alice", 0.5)
    r.end("c9", 0.6)
    r.finish_wrap_up("alice", 0.6)
    r.arrive(call("c1"), 1.0)
    return r


def connected() -> Router:
    r = offered()
    r.accept("c1", "alice", 2.0)
    return r


def timed_out() -> Router:
    r = offered()
    r.advance(21.0)
    return r


def bob_logged_out() -> Router:
    r = timed_out()
    r.logout("bob", 22.0)
    return r


CASES: list[tuple[str, Callable[[], Router], Callable[[Router], object], type[Exception], str]] = [
    ("accept an unknown call", offered, lambda r: r.accept("nope", "alice", 2), UnknownCall, "not known"),
    ("accept by an unknown agent", offered, lambda r: r.accept("c1", "zed", 2), UnknownAgent, "log the agent in"),
    ("accept after the deadline", offered, lambda r: r.accept("c1", "alice", 21.5), OfferNotPending, "expired"),
    ("accept after the timeout fired", timed_out, lambda r: r.accept("c1", "alice", 21.5), OfferNotPending, "not being offered"),
    ("accept by the wrong agent", offered, lambda r: r.accept("c1", "bob", 2), OfferNotPending, "another agent"),
    ("double accept", connected, lambda r: r.accept("c1", "alice", 3), OfferNotPending, "already accepted"),
    ("reject after accepting", connected, lambda r: r.reject("c1", "alice", 3), OfferNotPending, "already accepted"),
    ("accept a call that finished", offered, lambda r: r.accept("c9", "alice", 3), OfferNotPending, "already finished"),
    ("unreachable for an offer that is not open", connected, lambda r: r.unreachable("c1", "bob", 3), OfferNotPending, "not being offered"),
    ("arrival with an id in use", offered, lambda r: r.arrive(call("c1"), 2), DuplicateCall, "already in use"),
    ("arrival reusing a finished call's id", offered, lambda r: r.arrive(call("c9"), 2), DuplicateCall, "call that finished"),
    ("ready for an unknown agent", offered, lambda r: r.ready("zed", 2), UnknownAgent, "not known"),
    ("ready for a logged-out agent", bob_logged_out, lambda r: r.ready("bob", 23), AgentStateError, "logged out"),
    ("log in twice", offered, lambda r: r.login(ALICE, 2), AgentStateError, "already logged in"),
    ("end a call that was never answered", offered, lambda r: r.end("c1", 2), CallStateError, "not connected"),
    ("hang up a call that finished", offered, lambda r: r.hangup("c9", 2), CallStateError, "already finished"),
    ("hang up an unknown call", offered, lambda r: r.hangup("nope", 2), UnknownCall, "arrival"),
    ("assign to a logged-out agent", bob_logged_out, lambda r: r.assign("c1", "bob", 23), AgentStateError, "available, idle"),
    ("assign a connected call", connected, lambda r: r.assign("c1", "bob", 3), CallStateError, "only a queued call"),
    ("finish wrap-up while idle", offered, lambda r: r.finish_wrap_up("bob", 2), AgentStateError, "not in wrap-up"),
    ("not-ready reason too long", offered, lambda r: r.not_ready("bob", 2, "x" * 500), InvalidInput, "at most 100"),
    ("node name that would alter a query", offered, lambda r: r.node_down("n1^ORactive=true", 2), InvalidInput, "identifier"),
    ("arrival that is not a Call", offered, lambda r: r.arrive("c2", 2), InvalidInput, "expected a Call"),  # type: ignore[arg-type]
    ("login that is not an Agent", offered, lambda r: r.login("bob", 2), InvalidInput, "expected an Agent"),  # type: ignore[arg-type]
    ("view of an unknown agent", offered, lambda r: r.agent("zed"), UnknownAgent, "not known"),
    ("a time that is not a number", offered, lambda r: r.accept("c1", "alice", math.nan), InvalidInput, "not a time"),
    ("no time at all", offered, lambda r: r.ready("bob", None), InvalidInput, "not a time"),  # type: ignore[arg-type]
]  # fmt: skip


@pytest.mark.parametrize(
    ("build", "operation", "error", "words"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_event_is_refused_and_changes_nothing(
    build: Callable[[], Router],
    operation: Callable[[Router], object],
    error: type[Exception],
    words: str,
) -> None:
    """A refused event raises its typed error with a useful message; the state is unchanged."""
    router = build()
    before = router.snapshot()
    deadline = router.next_deadline()
    with pytest.raises(error, match=words) as caught:
        operation(router)
    assert isinstance(caught.value, CallResilienceError)
    assert router.snapshot() == before
    assert router.next_deadline() == deadline
