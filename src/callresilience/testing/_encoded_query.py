"""ServiceNow encoded queries (`sysparm_query`), parsed and evaluated the way the instance does.

A query is a list of *new-query* groups (`^NQ`), each a conjunction (`^`) of clauses, each
clause a disjunction (`^OR`) of conditions. `ORDERBY<field>` and `ORDERBYDESC<field>` sort.
`^^` is an escaped, literal caret. As on a real instance, a part that does not parse, or that
names a field the table does not have, is **silently ignored**, which widens the result.

Everything here is pure: strings in, decisions out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence

import attrs

__all__ = ["Condition", "EncodedQuery", "OrderBy", "parse_encoded_query"]

# Longest first where one operator is a prefix of another ("ISNOTEMPTY" and "ISEMPTY" differ
# early, but "<=" must win over "<").
_OPERATORS = (
    "ISNOTEMPTY",
    "ISEMPTY",
    "STARTSWITH",
    "ENDSWITH",
    "NOT LIKE",
    "NOT IN",
    "LIKE",
    "IN",
    "!=",
    ">=",
    "<=",
    "=",
    ">",
    "<",
)
_NO_VALUE = frozenset({"ISEMPTY", "ISNOTEMPTY"})
_FIELD = re.compile(r"[a-z0-9_.]+")


@attrs.frozen
class Condition:
    """One `field OPERATOR value` term.

    Args:
        field: The field name.
        operator: One of `=`, `!=`, `LIKE`, `NOT LIKE`, `STARTSWITH`, `ENDSWITH`, `IN`,
            `NOT IN`, `ISEMPTY`, `ISNOTEMPTY`, `<`, `<=`, `>`, `>=`.
        value: The value as written (empty for `ISEMPTY` and `ISNOTEMPTY`).
    """

    field: str
    operator: str
    value: str = ""

    def matches(self, record: Mapping[str, str]) -> bool:
        """Return whether `record` satisfies this condition (missing fields read as empty)."""
        actual = record.get(self.field, "")
        op = self.operator
        if op == "=":
            return actual == self.value
        if op == "!=":
            return actual != self.value
        if op == "ISEMPTY":
            return actual == ""
        if op == "ISNOTEMPTY":
            return actual != ""
        if op in ("IN", "NOT IN"):
            found = actual in {item.strip() for item in self.value.split(",")}
            return found if op == "IN" else not found
        if op in ("LIKE", "NOT LIKE", "STARTSWITH", "ENDSWITH"):
            return _text_match(op, actual.casefold(), self.value.casefold())
        return _compare(op, actual, self.value)


def _text_match(op: str, actual: str, wanted: str) -> bool:
    if op == "LIKE":
        return wanted in actual
    if op == "NOT LIKE":
        return wanted not in actual
    if op == "STARTSWITH":
        return actual.startswith(wanted)
    return actual.endswith(wanted)


def _compare(op: str, actual: str, wanted: str) -> bool:
    try:
        left, right = float(actual), float(wanted)
        order = (left > right) - (left < right)
    except ValueError:
        # Dates ("YYYY-MM-DD HH:MM:SS") and other strings compare as text.
        order = (actual > wanted) - (actual < wanted)
    if op == "<":
        return order < 0
    if op == "<=":
        return order <= 0
    if op == ">":
        return order > 0
    return order >= 0


@attrs.frozen
class OrderBy:
    """A sort key from `ORDERBY<field>` or `ORDERBYDESC<field>`.

    Args:
        field: The field to sort on.
        descending: True for `ORDERBYDESC`.
    """

    field: str
    descending: bool = False


@attrs.frozen
class EncodedQuery:
    """A parsed encoded query.

    Attributes:
        groups: The `^NQ` groups; a record matches when any group matches. A group is a tuple
            of clauses that must all match; a clause is a tuple of conditions of which one
            must match.
        order: The sort keys, most significant first.
    """

    groups: tuple[tuple[tuple[Condition, ...], ...], ...] = ()
    order: tuple[OrderBy, ...] = ()

    def matches(self, record: Mapping[str, str]) -> bool:
        """Return whether `record` is selected (an empty query selects everything)."""
        if not self.groups:
            return True
        return any(
            all(any(c.matches(record) for c in clause) for clause in group) for group in self.groups
        )

    def apply(self, records: Iterable[Mapping[str, str]]) -> list[Mapping[str, str]]:
        """Return the matching records, sorted by the `ORDERBY` keys (stable otherwise)."""
        selected = [r for r in records if self.matches(r)]
        for key in reversed(self.order):
            selected.sort(key=_field_of(key.field), reverse=key.descending)
        return selected


def _field_of(field: str) -> Callable[[Mapping[str, str]], str]:
    return lambda record: record.get(field, "")


def parse_encoded_query(text: str, *, fields: Sequence[str] | None = None) -> EncodedQuery:
    """Parse `text`, dropping what a real instance would silently ignore.

    Args:
        text: The `sysparm_query` value.
        fields: The fields the table has. A condition or sort key on any other field is
            ignored, as ServiceNow does. None accepts every field name.

    Returns:
        The parsed query; never raises on malformed input.
    """
    known = None if fields is None else frozenset(fields)
    groups: list[tuple[tuple[Condition, ...], ...]] = []
    order: list[OrderBy] = []
    for group_terms in _split_groups(_split_terms(text)):
        clauses: list[list[Condition]] = []
        for term in group_terms:
            if term.startswith("ORDERBYDESC") or term.startswith("ORDERBY"):
                descending = term.startswith("ORDERBYDESC")
                field = term[len("ORDERBYDESC") if descending else len("ORDERBY") :]
                if _FIELD.fullmatch(field) and (known is None or field in known):
                    order.append(OrderBy(field, descending))
                continue
            is_or = term.startswith("OR")
            condition = _parse_condition(term[2:] if is_or else term)
            if condition is None or (known is not None and condition.field not in known):
                continue
            if is_or and clauses:
                clauses[-1].append(condition)
            else:
                clauses.append([condition])
        if clauses:
            groups.append(tuple(tuple(clause) for clause in clauses))
    return EncodedQuery(tuple(groups), tuple(order))


def _split_terms(text: str) -> list[str]:
    """Split on single carets; `^^` is a literal caret."""
    terms: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "^" and text.startswith("^^", i):
            current.append("^")
            i += 2
            continue
        if char == "^":
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    terms.append("".join(current))
    return [t for t in terms if t]


def _split_groups(terms: list[str]) -> list[list[str]]:
    groups: list[list[str]] = [[]]
    for term in terms:
        rest = term
        if term.startswith("NQ"):
            groups.append([])
            rest = term[2:]
        if rest:
            groups[-1].append(rest)
    return groups


def _parse_condition(term: str) -> Condition | None:
    # Column names are lower case, so the first upper-case letter or symbol starts the
    # operator: "stateIN1,2" is `state IN 1,2`.
    match = _FIELD.match(term)
    if match is None:
        return None
    field, rest = match.group(), term[match.end() :]
    for op in _OPERATORS:
        if rest.startswith(op):
            value = rest[len(op) :]
            if op in _NO_VALUE and value:
                return None
            return Condition(field, op, value)
    return None
