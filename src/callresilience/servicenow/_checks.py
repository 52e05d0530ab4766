"""What the client checks before a request leaves: table names and payloads."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from .._errors import InvalidInput
from ._query import check_field, check_query_value

__all__ = [
    "TABLE_RE",
    "check_table",
    "compact_json",
    "payload_json",
    "ref_value",
    "with_correlation",
]

TABLE_RE: Final = re.compile(r"[a-z0-9_]+")
_PAYLOAD_KEY_RE: Final = re.compile(r"[a-z0-9_]+")
#: Keys already found to be field names: tables have few, so each is checked about once.
_FIELD_KEYS: Final[set[str]] = set()
_MAX_FIELD_KEYS: Final = 4096
#: Compact JSON as a request sends it (one encoder for every payload; a payload that contains
#: itself ends in `RecursionError`, refused like any other non-JSON value).
compact_json: Final = json.JSONEncoder(
    separators=(",", ":"), allow_nan=False, check_circular=False
).encode


def check_table(table: object) -> str:
    """Return `table` if it is a table name, else raise `InvalidInput`."""
    if not isinstance(table, str) or not TABLE_RE.fullmatch(table):
        raise InvalidInput(
            "table: not a ServiceNow table name; use lowercase letters, digits and '_' "
            "(e.g. 'sn_openframe_phone_log')",
            field="table",
        )
    return table


def payload_json(payload: object) -> bytes:
    """Return `payload` as compact JSON, refusing other keys than field names and non-JSON."""
    if not isinstance(payload, Mapping):
        raise InvalidInput("payload: expected a mapping of field names to values", field="payload")
    for key in payload:
        if type(key) is str and key in _FIELD_KEYS:
            continue
        if not isinstance(key, str) or not _PAYLOAD_KEY_RE.fullmatch(key):
            raise InvalidInput(
                "payload: every key must be a field name of lowercase letters, digits and '_'",
                field="payload",
            )
        if len(_FIELD_KEYS) < _MAX_FIELD_KEYS:
            _FIELD_KEYS.add(key)
    try:
        return compact_json(payload).encode()
    except (TypeError, ValueError, RecursionError) as error:
        raise InvalidInput(
            f"payload: not JSON ({type(error).__name__}); give strings, numbers, booleans, "
            "None, lists and mappings",
            field="payload",
        ) from None


def ref_value(value: object) -> str | None:
    """Return the sys_id (or plain value) of a field, whichever form it came in.

    Reference fields come back as ``{"link": ".../sys_user/<id>", "value": "<id>"}``, or as
    the bare ``"<id>"`` with ``sysparm_exclude_reference_link=true``; other fields are plain
    strings. Empty values become None.

    >>> ref_value({"link": "https://x/api/now/table/sys_user/abc", "value": "abc"})
    'abc'
    >>> ref_value("abc")
    'abc'
    >>> ref_value("") is None
    True
    """
    if isinstance(value, Mapping):
        value = value.get("value")
    if isinstance(value, str) and value:
        return value
    return None


def with_correlation(payload: object, correlation: object) -> tuple[dict[str, Any], str, str]:
    """Return the payload with its correlation field set, and the field and value.

    Raises:
        InvalidInput: When `correlation` is not ``(field, value)``, the value is empty, or the
            payload holds another value for the field.
        UnsafeQueryValue: When the value cannot go into the query that looks the record up.
    """
    if not (
        isinstance(correlation, tuple | list)
        and len(correlation) == 2
        and all(isinstance(part, str) for part in correlation)
    ):
        raise InvalidInput(
            "correlation: give (field, value), two strings, e.g. ('correlation_id', call_id)",
            field="correlation",
        )
    field, value = correlation
    # The lookup must be possible before anything is written.
    check_query_value(check_field(field), value)
    if not value:
        raise InvalidInput(f"{field}: the correlation value must not be empty", field=field)
    if not isinstance(payload, Mapping):
        raise InvalidInput("payload: expected a mapping of field names to values", field="payload")
    # Copied, not checked: the request that sends it checks and encodes it once.
    body = dict(payload)
    if field not in body:
        body[field] = value
    elif ref_value(body[field]) != value:
        raise InvalidInput(
            f"payload[{field!r}]: differs from the correlation value; they must be equal",
            field=field,
        )
    return body, field, value
