"""The encoded-query core: parsing and matching like a real instance."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from callresilience.testing import EncodedQuery, parse_encoded_query
from callresilience.testing._encoded_query import Condition, OrderBy

ROWS = [
    {"name": "Abel Tuter", "state": "new", "priority": "2", "phone": "+15550001"},
    {"name": "Beth Anglin", "state": "closed_complete", "priority": "10", "phone": ""},
    {"name": "David Loo", "state": "work_in_progress", "priority": "1"},
]
FIELDS = ["name", "state", "priority", "phone"]


def names(query: str, fields: list[str] | None = FIELDS) -> list[str]:
    return [r["name"] for r in parse_encoded_query(query, fields=fields).apply(ROWS)]


def test_equals_and_not_equals() -> None:
    """`=` selects exact values and `!=` the rest."""
    assert names("state=new") == ["Abel Tuter"]
    assert names("state!=new") == ["Beth Anglin", "David Loo"]


def test_caret_is_and_and_or_binds_tighter() -> None:
    """`a^b^ORc` means a AND (b OR c)."""
    assert names("priority!=5^state=new^ORstate=work_in_progress") == ["Abel Tuter", "David Loo"]
    assert names("state=new^name=David Loo") == []


def test_text_operators_ignore_case() -> None:
    """LIKE, NOT LIKE, STARTSWITH and ENDSWITH compare without case."""
    assert names("nameLIKEan") == ["Beth Anglin"]
    assert names("nameNOT LIKEan") == ["Abel Tuter", "David Loo"]
    assert names("nameSTARTSWITHda") == ["David Loo"]
    assert names("nameENDSWITHTER") == ["Abel Tuter"]


def test_emptiness_operators_treat_missing_as_empty() -> None:
    """ISEMPTY matches empty and missing values; ISNOTEMPTY the others."""
    assert names("phoneISEMPTY") == ["Beth Anglin", "David Loo"]
    assert names("phoneISNOTEMPTY") == ["Abel Tuter"]


def test_in_and_not_in() -> None:
    """IN takes a comma-separated list; NOT IN is its complement."""
    assert names("stateINnew, work_in_progress") == ["Abel Tuter", "David Loo"]
    assert names("stateNOT INnew") == ["Beth Anglin", "David Loo"]


def test_comparisons_are_numeric_when_both_sides_are_numbers() -> None:
    """`<`, `<=`, `>`, `>=` compare numbers as numbers and other text as text."""
    assert names("priority>2") == ["Beth Anglin"]
    assert names("priority>=2") == ["Abel Tuter", "Beth Anglin"]
    assert names("priority<2") == ["David Loo"]
    assert names("priority<=2") == ["Abel Tuter", "David Loo"]
    assert names("name<B") == ["Abel Tuter"]


def test_orderby_and_orderbydesc_sort_by_several_keys() -> None:
    """ORDERBY keys sort in order of significance; ORDERBYDESC reverses one key."""
    assert names("ORDERBYDESCname") == ["David Loo", "Beth Anglin", "Abel Tuter"]
    query = parse_encoded_query("ORDERBYstate^ORDERBYDESCname")
    assert query.order == (OrderBy("state"), OrderBy("name", descending=True))


def test_nq_starts_a_new_query_ored_with_the_first() -> None:
    """`^NQ` joins two whole queries with OR."""
    assert names("state=new^NQpriority=1") == ["Abel Tuter", "David Loo"]
    assert names("state=new^NQ") == ["Abel Tuter"]


def test_invalid_parts_are_silently_ignored_and_widen_the_result() -> None:
    """Garbage and unknown fields are dropped, as ServiceNow does by default."""
    assert names("bogus=1") == ["Abel Tuter", "Beth Anglin", "David Loo"]
    assert names("state=new^%%%^=x^ORDERBYbogus") == ["Abel Tuter"]
    assert names("state=new^ORbogus=1") == ["Abel Tuter"]
    assert names("phoneISEMPTYjunk") == ["Abel Tuter", "Beth Anglin", "David Loo"]
    assert names("stateWHATEVERnew") == ["Abel Tuter", "Beth Anglin", "David Loo"]


def test_any_field_is_accepted_without_a_field_list() -> None:
    """Without `fields`, every well-formed condition counts."""
    assert names("bogus=1", fields=None) == []


def test_double_caret_is_a_literal_caret() -> None:
    """`^^` inside a value stands for one `^`."""
    query = parse_encoded_query("name=a^^b^state=new")
    assert query.groups == (
        (((Condition("name", "=", "a^b")),), (Condition("state", "=", "new"),)),
    )


def test_empty_query_selects_everything() -> None:
    """An empty query keeps every record in its order."""
    assert EncodedQuery().matches({})
    assert names("") == ["Abel Tuter", "Beth Anglin", "David Loo"]


@given(st.text())
def test_parsing_never_raises(text: str) -> None:
    """Any string parses (invalid parts drop out) and can be applied."""
    parse_encoded_query(text, fields=FIELDS).apply(ROWS)
