"""The encoded-query builder: what it builds, and that no value can change a query's shape."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callresilience import InvalidInput, UnsafeQueryValue
from callresilience.servicenow import Query
from callresilience.servicenow._query import check_query_value

INJECTIONS = [
    ("x^ORsys_id!=0", "'^'"),
    ("x^NQactive=true", "'^'"),
    ("^", "'^'"),
    ("javascript:gs.getUser()", "javascript:"),
    ("JavaScript:gs.getUserID()", "javascript:"),
    ("  javascript:gs.log('x')", "javascript:"),
    ("\tJAVASCRIPT:1", "javascript:"),
    ("\u200bjavascript:1", "javascript:"),
    ("\ufeffjavascript:1", "javascript:"),
    ("abc\nORDERBYsys_id", "line break"),
    ("abc\r\nactive=true", "line break"),
    ("abc\r", "line break"),
    ("abc\u2028def", "line break"),
    ("abc\x85def", "line break"),
    ("abc\x00", "NUL"),
    ("a" * 4097, "longer than"),
]


def test_conditions_and_orderings_encode() -> None:
    """Each operator has its encoded form; AND is '^', OR is '^OR', orderings come last."""
    query = (
        Query()
        .order_by("sys_created_on")
        .eq("call_id", "9f1c-77")
        .ne("state", "closed_complete")
        .or_eq("state", "new")
        .like("short_description", "printer")
        .starts_with("number", "IMS")
        .ends_with("caller_phone_number", "0100")
        .in_("type", ["phone", "chat"])
        .is_empty("assigned_to")
        .is_not_empty("caller_id.email")
        .order_by_desc("number")
    )
    assert str(query) == (
        "call_id=9f1c-77^state!=closed_complete^ORstate=new^short_descriptionLIKEprinter"
        "^numberSTARTSWITHIMS^caller_phone_numberENDSWITH0100^typeINphone,chat"
        "^assigned_toISEMPTY^caller_id.emailISNOTEMPTY"
        "^ORDERBYsys_created_on^ORDERBYDESCnumber"
    )


def test_empty_query_is_empty_string() -> None:
    """A query with nothing in it encodes as the empty string."""
    assert str(Query()) == ""
    assert str(Query().order_by("number")) == "ORDERBYnumber"


def test_queries_are_immutable_values() -> None:
    """Adding a condition returns a new query and leaves the base one as it was."""
    base = Query().eq("active", "true")
    extended = base.eq("call_id", "c-1")
    assert str(base) == "active=true"
    assert str(extended) == "active=true^call_id=c-1"
    assert base == Query().eq("active", "true")
    assert repr(base) == "Query('active=true')"


@pytest.mark.parametrize(("value", "rule"), INJECTIONS)
def test_injection_values_are_refused(value: str, rule: str) -> None:
    """Values that would add conditions, break lines or run scripts raise UnsafeQueryValue."""
    with pytest.raises(UnsafeQueryValue) as caught:
        Query().eq("call_id", value)
    assert caught.value.field == "call_id"
    assert "call_id" in str(caught.value)
    assert rule in str(caught.value)


@pytest.mark.parametrize("method", ["eq", "ne", "like", "starts_with", "ends_with", "or_eq"])
def test_every_operator_checks_its_value(method: str) -> None:
    """No operator lets an unsafe value through."""
    query = Query().eq("active", "true")
    with pytest.raises(UnsafeQueryValue):
        getattr(query, method)("call_id", "x^NQactive=true")


def test_refused_value_is_not_echoed() -> None:
    """The error names the field and the rule but never shows the value (it may be a phone)."""
    with pytest.raises(UnsafeQueryValue) as caught:
        Query().eq("caller_phone_number", "+14155550100^ORactive=true")
    assert "4155550100" not in str(caught.value)


def test_in_list_refuses_commas_and_empty_lists() -> None:
    """IN values may not contain ',', the list must not be empty or a bare string."""
    with pytest.raises(UnsafeQueryValue, match="IN list"):
        Query().in_("type", ["phone", "a,b"])
    with pytest.raises(InvalidInput, match="at least one"):
        Query().in_("type", [])
    with pytest.raises(InvalidInput, match="not one string"):
        Query().in_("type", "phone")


def test_commas_are_fine_outside_in_lists() -> None:
    """A comma only matters inside IN; elsewhere it is an ordinary character."""
    assert str(Query().eq("short_description", "a,b")) == "short_description=a,b"


@pytest.mark.parametrize(
    "field", ["Call_id", "call id", "call_id^OR", "x=1", "", "caller-id", "ORDERBYx", 7]
)
def test_field_names_must_match_the_pattern(field: Any) -> None:
    """Field names are [a-z0-9_.]+ and nothing else."""
    with pytest.raises(InvalidInput, match=r"\[a-z0-9_|lowercase"):
        Query().eq(field, "x")
    with pytest.raises(InvalidInput):
        Query().order_by(field)


def test_non_string_values_are_refused() -> None:
    """A value must be a string; numbers are converted by the caller, not guessed."""
    with pytest.raises(UnsafeQueryValue, match="must be strings"):
        Query().eq("priority", 1)  # type: ignore[arg-type]


def test_or_needs_a_condition_before_it() -> None:
    """An OR with nothing to OR with is refused rather than encoded as a dangling '^OR'."""
    with pytest.raises(InvalidInput, match="OR condition"):
        Query().or_eq("state", "new")
    with pytest.raises(InvalidInput):
        Query().order_by("number").or_eq("state", "new")


def test_plain_values_pass_the_check() -> None:
    """Ids, E.164 numbers and ordinary text are accepted unchanged."""
    for value in ["+14155550100", "0f8e9c1a-3b2d-4c5e-8f70-112233445566", "John's printer", ""]:
        assert check_query_value("x", value) == value


# The property: any value either is refused, or the query reads back exactly as built.

_OPERATORS = ("ISNOTEMPTY", "ISEMPTY", "STARTSWITH", "ENDSWITH", "LIKE", "IN", "!=", "=")
_FIELD = re.compile(r"[a-z0-9_.]+")


def parse(encoded: str) -> tuple[list[tuple[str, str, str, Any]], list[tuple[str, str]]]:
    """Read an encoded query back into (joiner, field, operator, value) and orderings.

    Written independently of the builder, the way ServiceNow splits a query: on '^', then
    'OR'/'NQ'/'ORDERBY' prefixes, then the field name, then the operator.
    """
    conditions: list[tuple[str, str, str, Any]] = []
    orderings: list[tuple[str, str]] = []
    if not encoded:
        return conditions, orderings
    for part in encoded.split("^"):
        term = part
        if term.startswith("ORDERBYDESC"):
            orderings.append(("desc", term.removeprefix("ORDERBYDESC")))
            continue
        if term.startswith("ORDERBY"):
            orderings.append(("asc", term.removeprefix("ORDERBY")))
            continue
        assert not orderings, "a condition after an ordering"
        assert not term.startswith("NQ"), "a new query was started"
        joiner = "and"
        if term.startswith("OR"):
            joiner, term = "or", term.removeprefix("OR")
        match = _FIELD.match(term)
        assert match is not None, f"no field in {term!r}"
        rest = term[match.end() :]
        operator = next(op for op in _OPERATORS if rest.startswith(op))
        value: Any = rest.removeprefix(operator)
        if operator in ("ISEMPTY", "ISNOTEMPTY"):
            assert value == ""
            value = None
        elif operator == "IN":
            value = tuple(value.split(","))
        conditions.append((joiner, match.group(), operator, value))
    return conditions, orderings


_SPICY = st.sampled_from(
    ["^", "^OR", "^NQ", "ORDERBY", "javascript:", "JAVASCRIPT:", "\n", "\r", ",", "=", "!=", " "]
)
_VALUES = st.one_of(
    st.text(max_size=30),
    st.lists(st.one_of(_SPICY, st.text(max_size=5)), max_size=5).map("".join),
    st.sampled_from([value for value, _ in INJECTIONS]),
)
_FIELDS = st.from_regex(r"[a-z0-9_.]{1,12}", fullmatch=True)
_SIMPLE = {"eq": "=", "ne": "!=", "like": "LIKE", "starts_with": "STARTSWITH"}
_STEPS = st.one_of(
    st.tuples(st.sampled_from([*_SIMPLE, "ends_with", "or_eq"]), _FIELDS, _VALUES),
    st.tuples(st.just("in_"), _FIELDS, st.lists(_VALUES, min_size=1, max_size=3)),
    st.tuples(st.sampled_from(["is_empty", "is_not_empty"]), _FIELDS, st.none()),
    st.tuples(st.sampled_from(["order_by", "order_by_desc"]), _FIELDS, st.none()),
)
_EXPECTED_OPERATOR = {
    **_SIMPLE,
    "ends_with": "ENDSWITH",
    "or_eq": "=",
    "in_": "IN",
    "is_empty": "ISEMPTY",
    "is_not_empty": "ISNOTEMPTY",
}


@given(st.lists(_STEPS, max_size=8))
def test_no_value_changes_the_structure(steps: list[tuple[str, str, Any]]) -> None:
    """Either the builder refuses a value, or the query parses back into exactly what was added."""
    query = Query()
    conditions: list[tuple[str, str, str, Any]] = []
    orderings: list[tuple[str, str]] = []
    for method, field, value in steps:
        if method in ("order_by", "order_by_desc"):
            query = getattr(query, method)(field)
            orderings.append(("asc" if method == "order_by" else "desc", field))
            continue
        try:
            query = (
                getattr(query, method)(field)
                if value is None
                else getattr(query, method)(field, value)
            )
        except UnsafeQueryValue:
            continue
        except InvalidInput:
            assert method == "or_eq"
            assert not conditions
            continue
        joiner = "or" if method == "or_eq" else "and"
        expected_value = tuple(value) if method == "in_" else value
        conditions.append((joiner, field, _EXPECTED_OPERATOR[method], expected_value))
    assert parse(str(query)) == (conditions, orderings)
