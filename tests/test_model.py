"""Calls and agents validate their fields at construction, naming the field and the rule."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callresilience import Agent, Call, InvalidInput, mask_phone
from callresilience.routing import QueueConfig, RouterConfig

CALL_ARGS: dict[str, Any] = {
    "call_id": "c-1",
    "caller": "+14155550100",
    "queue": "sales",
    "arrived": 0.0,
}

BAD_CALLS = [
    ({"call_id": ""}, "call_id", "1-64 characters"),
    ({"call_id": "x" * 65}, "call_id", "1-64 characters"),
    ({"call_id": "c1^ORsys_id!=0"}, "call_id", "identifier"),
    ({"call_id": "c 1"}, "call_id", "identifier"),
    ({"call_id": 12}, "call_id", "identifier"),
    ({"caller": "4155550100"}, "caller", "E.164"),
    ({"caller": "+1 415 555 0100"}, "caller", "digits only"),
    ({"caller": "+0123456789"}, "caller", "E.164"),
    ({"caller": "+1234567890123456"}, "caller", "E.164"),
    ({"caller": 14155550100}, "caller", "E.164"),
    ({"queue": "sales\n"}, "queue", "identifier"),
    ({"arrived": math.nan}, "arrived", "not a time"),
    ({"arrived": "now"}, "arrived", "not a time"),
    ({"priority": -1}, "priority", "0 to 1000"),
    ({"priority": True}, "priority", "whole number"),
    ({"skills": {"fr", "bad skill"}}, "skills", "identifier"),
    ({"skills": {f"s{n}" for n in range(65)}}, "skills", "at most 64"),
    ({"attributes": {"k": "v" * 1025}}, "attributes", "at most 1024"),
    ({"attributes": {f"k{n}": "v" for n in range(33)}}, "attributes", "at most 32"),
    ({"attributes": {"": "v"}}, "attributes", "1-64"),
    ({"attributes": {"k": 5}}, "attributes", "strings"),
    ({"attributes": ["k", "v"]}, "attributes", "mapping"),
]


@pytest.mark.parametrize(("change", "field", "words"), BAD_CALLS)
def test_bad_call_field_raises_invalid_input_naming_the_field(
    change: dict[str, Any], field: str, words: str
) -> None:
    """Each broken rule raises InvalidInput that names the field and says what is expected."""
    with pytest.raises(InvalidInput, match=words) as caught:
        Call(**{**CALL_ARGS, **change})
    assert caught.value.field == field
    assert field in str(caught.value)


def test_rejected_phone_number_is_masked_in_the_message() -> None:
    """An invalid phone number is not echoed in full in the error message."""
    with pytest.raises(InvalidInput) as caught:
        Call(**{**CALL_ARGS, "caller": "+1 415 555 0100"})
    assert "555 01" not in str(caught.value)


def test_valid_call_keeps_its_values_and_hides_the_number_in_repr() -> None:
    """A valid call keeps what it was given; its repr masks the caller."""
    c = Call(**CALL_ARGS, priority=3, skills="fr", attributes={"lang": "fr"})
    assert (c.priority, c.skills, dict(c.attributes)) == (3, frozenset({"fr"}), {"lang": "fr"})
    assert "4155550100" not in repr(c)
    assert Call(**{**CALL_ARGS, "caller": None}).caller is None


def test_call_attributes_cannot_be_changed_after_construction() -> None:
    """A call's attributes are read-only, even through the mapping."""
    source = {"lang": "fr"}
    c = Call(**CALL_ARGS, attributes=source)
    source["lang"] = "en"
    assert c.attributes["lang"] == "fr"
    with pytest.raises(TypeError):
        c.attributes["lang"] = "de"  # type: ignore[index]


def test_calls_are_hashable_values() -> None:
    """Two calls with the same fields are equal and hash alike."""
    assert Call(**CALL_ARGS) == Call(**CALL_ARGS)
    assert hash(Call(**CALL_ARGS)) == hash(Call(**CALL_ARGS))


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"agent_id": "a b"}, "agent_id", "identifier"),
        ({"user_sys_id": "ABC"}, "user_sys_id", "32 lowercase"),
        ({"user_sys_id": "0" * 31 + "G"}, "user_sys_id", "hexadecimal"),
        ({"queues": {"q": 0}}, "queues", "tier level"),
        ({"queues": {"q": True}}, "queues", "tier level"),
        ({"queues": ["q", "q"]}, "queues", "once"),
        ({"queues": ["a^b"]}, "queues", "identifier"),
        ({"node": ""}, "node", "identifier"),
    ],
)
def test_bad_agent_field_raises_invalid_input(
    kwargs: dict[str, Any], field: str, words: str
) -> None:
    """Agent fields follow the same rules, with the same kind of message."""
    with pytest.raises(InvalidInput, match=words) as caught:
        Agent(**{"agent_id": "a1", **kwargs})
    assert caught.value.field == field


def test_agent_queues_accept_names_or_levels() -> None:
    """Queues may be listed by name (level 1) or mapped to tier levels."""
    assert Agent("a", queues="q").queues == (("q", 1),)
    assert Agent("a", queues=["b", "a"]).queues == (("a", 1), ("b", 1))
    agent = Agent("a", queues={"x": 2}, user_sys_id="0" * 32)
    assert (agent.level("x"), agent.level("y")) == (2, None)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"offer_timeout": 0},
        {"reject_delay": -1},
        {"wrap_up_time": math.inf},
        {"max_no_answer": 0},
        {"queues": (QueueConfig("q"), QueueConfig("q"))},
    ],
)
def test_bad_router_settings_are_refused(kwargs: dict[str, Any]) -> None:
    """Settings that make no sense raise InvalidInput at construction."""
    with pytest.raises(InvalidInput):
        RouterConfig(**kwargs)


def test_durations_accept_timedelta() -> None:
    """Every duration setting takes seconds or a timedelta."""
    from datetime import timedelta

    assert RouterConfig(offer_timeout=timedelta(seconds=15)).offer_timeout == 15.0
    assert QueueConfig("q", max_wait=timedelta(minutes=2)).max_wait == 120.0


@given(st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True))
def test_masked_number_keeps_only_its_ends(number: str) -> None:
    """mask_phone keeps the '+', two leading and two trailing digits, and the length."""
    masked = mask_phone(number)
    assert len(masked) == len(number)
    assert masked[:3] == number[:3]
    assert masked[-2:] == number[-2:]
    assert set(masked[3:-2]) == {"*"}
