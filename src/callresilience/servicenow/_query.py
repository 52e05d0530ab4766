"""Building ServiceNow encoded queries (`sysparm_query`) that no value can reshape.

An encoded query is a string such as ``call_id=abc^active=true^ORDERBYsys_created_on``. The
caret separates conditions and there is no escape for it that every release honours, so a value
holding ``^ORsys_id!=0`` or ``^NQactive=true`` would add conditions of its own, and ServiceNow
silently ignores the parts it cannot read: an injected or garbled condition widens the result.
A value starting with ``javascript:`` is run as a server-side script. So the builder refuses
such values outright (`UnsafeQueryValue`) instead of trying to escape them, and field names
must match ``[a-z0-9_.]+``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Final

import attrs

from .._errors import InvalidInput, UnsafeQueryValue

__all__ = ["Query", "check_field", "check_query_value"]

_FIELD_RE: Final = re.compile(r"[a-z0-9_.]+")
MAX_VALUE_LENGTH: Final = 4096

# Everything `str.splitlines()` breaks on, plus NUL: a line break ends a condition in some
# ServiceNow code paths and has no business in a correlation id or a phone number.
_LINE_BREAKS: Final = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029\x00")


def check_field(name: object, *, argument: str = "field") -> str:
    """Return `name` if it is a valid ServiceNow field name, else raise `InvalidInput`.

    Args:
        name: The field name; dot-walking (``caller_id.email``) is allowed.
        argument: How to name the offending argument in the error.

    Raises:
        InvalidInput: When `name` is not a string matching ``[a-z0-9_.]+``.
    """
    if not isinstance(name, str) or not _FIELD_RE.fullmatch(name):
        shown = repr(name) if isinstance(name, str) and len(name) <= 40 else type(name).__name__
        raise InvalidInput(
            f"{argument}: {shown} is not a ServiceNow field name; use lowercase letters, digits, "
            "'_' and '.' only (e.g. 'call_id' or 'caller_id.email')",
            field=argument,
        )
    return name


def _strip_invisible(value: str) -> str:
    start = 0
    while start < len(value) and (
        value[start].isspace() or unicodedata.category(value[start]) in ("Cc", "Cf")
    ):
        start += 1
    return value[start:]


def check_query_value(field: str, value: object, *, in_list: bool = False) -> str:
    """Return `value` if it is safe inside an encoded query, else raise `UnsafeQueryValue`.

    The rules: a string of at most 4096 characters, with no ``^`` (it would start a new
    condition), no line break or NUL, not starting with ``javascript:`` (ServiceNow would run
    it; checked case-insensitively after leading whitespace and invisible characters), and,
    inside an ``IN`` list, no ``,``.

    Args:
        field: The field the value is compared with, named in the error.
        value: The value to check.
        in_list: Whether the value is one item of an ``IN`` list.

    Raises:
        UnsafeQueryValue: When a rule is broken; the message names the field and the rule but
            never shows the value, which may be a phone number.
    """
    if not isinstance(value, str):
        raise UnsafeQueryValue(
            f"{field}: query values must be strings, got {type(value).__name__}; convert the "
            "value with str() first",
            field=field,
        )
    rule = None
    if "^" in value:
        rule = "it contains '^', which would start a new query condition"
    elif any(ch in _LINE_BREAKS for ch in value):
        rule = "it contains a line break or NUL"
    elif _strip_invisible(value)[:11].lower() == "javascript:":
        rule = "it starts with 'javascript:', which ServiceNow would run as a script"
    elif in_list and "," in value:
        rule = "it contains ',', which would split the IN list"
    elif len(value) > MAX_VALUE_LENGTH:
        rule = f"it is longer than {MAX_VALUE_LENGTH} characters"
    if rule is not None:
        raise UnsafeQueryValue(
            f"{field}: the value was refused because {rule}; the encoded query has no safe "
            "escape for this, so clean the value (ids and phone numbers never need it)",
            field=field,
        )
    return value


@attrs.frozen
class _Clause:
    joiner: str  # "" for the first condition, "^" for AND, "^OR" for OR, "^" for ORDERBY
    text: str


@attrs.frozen(repr=False)
class Query:
    """An encoded query, built one condition at a time; `str(query)` gives the encoded text.

    Each method returns a new `Query`, so a base query can be shared and extended::

        query = Query().eq("call_id", call_id).ne("state", "closed_complete")
        query = query.order_by_desc("sys_created_on")
        str(query)  # 'call_id=...^state!=closed_complete^ORDERBYDESCsys_created_on'

    Field names must match ``[a-z0-9_.]+`` (`InvalidInput` otherwise). Values must not
    contain ``^``, a line break or NUL, nor start with ``javascript:`` (`UnsafeQueryValue`
    otherwise); see `check_query_value`. Orderings always come after the conditions.
    """

    # Not init arguments: every clause must come through a checking method.
    _conditions: tuple[_Clause, ...] = attrs.field(init=False, default=())
    _orderings: tuple[str, ...] = attrs.field(init=False, default=())

    def _with(self, conditions: tuple[_Clause, ...], orderings: tuple[str, ...]) -> Query:
        query = Query()
        object.__setattr__(query, "_conditions", conditions)
        object.__setattr__(query, "_orderings", orderings)
        return query

    def _add(self, joiner: str, field: str, operator: str, value: str = "") -> Query:
        if not self._conditions:
            if joiner == "^OR":
                raise InvalidInput(
                    f"{field}: an OR condition needs a condition before it to be OR-ed with; "
                    "start the query with eq() or another condition",
                    field=field,
                )
            joiner = ""
        clause = _Clause(joiner, f"{field}{operator}{value}")
        return self._with((*self._conditions, clause), self._orderings)

    def _condition(self, joiner: str, field: str, operator: str, value: object) -> Query:
        check_field(field)
        return self._add(joiner, field, operator, check_query_value(field, value))

    def eq(self, field: str, value: str) -> Query:
        """Return this query AND ``field = value``."""
        return self._condition("^", field, "=", value)

    def ne(self, field: str, value: str) -> Query:
        """Return this query AND ``field != value``."""
        return self._condition("^", field, "!=", value)

    def like(self, field: str, value: str) -> Query:
        """Return this query AND ``field`` contains ``value``."""
        return self._condition("^", field, "LIKE", value)

    def starts_with(self, field: str, value: str) -> Query:
        """Return this query AND ``field`` starts with ``value``."""
        return self._condition("^", field, "STARTSWITH", value)

    def ends_with(self, field: str, value: str) -> Query:
        """Return this query AND ``field`` ends with ``value``."""
        return self._condition("^", field, "ENDSWITH", value)

    def in_(self, field: str, values: Iterable[str]) -> Query:
        """Return this query AND ``field`` is one of `values`.

        Raises:
            InvalidInput: When `values` is empty or a bare string.
            UnsafeQueryValue: When a value breaks a rule, or contains ``,``.
        """
        check_field(field)
        if isinstance(values, str):
            raise InvalidInput(
                f"{field}: in_() takes a list of values, not one string; use eq() for one value",
                field=field,
            )
        items = [check_query_value(field, value, in_list=True) for value in values]
        if not items:
            raise InvalidInput(f"{field}: in_() needs at least one value", field=field)
        return self._add("^", field, "IN", ",".join(items))

    def is_empty(self, field: str) -> Query:
        """Return this query AND ``field`` is empty."""
        return self._add("^", check_field(field), "ISEMPTY")

    def is_not_empty(self, field: str) -> Query:
        """Return this query AND ``field`` is not empty."""
        return self._add("^", check_field(field), "ISNOTEMPTY")

    def or_eq(self, field: str, value: str) -> Query:
        """Return this query with ``OR field = value`` joined to the condition before it.

        Raises:
            InvalidInput: When there is no condition yet to OR with.
        """
        return self._condition("^OR", field, "=", value)

    def order_by(self, field: str) -> Query:
        """Return this query sorted by `field`, ascending, after any earlier ordering."""
        check_field(field)
        return self._with(self._conditions, (*self._orderings, f"ORDERBY{field}"))

    def order_by_desc(self, field: str) -> Query:
        """Return this query sorted by `field`, descending, after any earlier ordering."""
        check_field(field)
        return self._with(self._conditions, (*self._orderings, f"ORDERBYDESC{field}"))

    def __str__(self) -> str:
        parts = [clause.joiner + clause.text for clause in self._conditions]
        for ordering in self._orderings:
            parts.append(("^" if parts else "") + ordering)
        return "".join(parts)

    def __repr__(self) -> str:
        return f"Query({str(self)!r})"
