"""Folding: an update appended while its record's create has not run yet joins the create.

The drainer's intents have two shapes (see `create_intent` and `update_intent`). When an
update is appended and the create of its record is still pending and was never claimed, the
store merges the update's fields into the create's payload and keeps the update as done, in
the same transaction: one POST then carries the record's final state, and the PATCH is never
sent. After an outage the backlog drains with one request per record instead of two or more.

Folding is refused (the update is appended as usual) unless all of this holds, so that the
instance ends up exactly as if every entry had run one by one:

- the create was never claimed: nothing of it can have reached the instance, so its payload
  is still free to change (an attempted create may be adopted by a lookup later, with the
  fields of the attempt);
- the update's fields hold no ``{"$ref": ...}``: a name it refers to may be created only
  after the create;
- the update has the create's group (a held group must not be written through another);
- the update does not change the create's correlation field, by which a create is looked up;
- no entry of the call between the create and the update is still to run and could write
  the same record: an update of it that was not folded, or an entry of a kind the drainer
  does not know;
- the merged payload stays within the journal's size limit.

The stores call `fold` inside their append transaction; this module only decides and merges.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

from ._types import MAX_PAYLOAD_BYTES, EntryState, Intent, to_json

CREATE: Final = "create"
UPDATE: Final = "update"
#: The key of the create's payload that lists the keys of the updates folded into it.
FOLDED: Final = "folded"


def open_create(kind: str, state: EntryState, attempts: int, last_error: str | None) -> bool:
    """Whether an entry is a create that may still take folded updates: never claimed."""
    return kind == CREATE and state is EntryState.PENDING and attempts == 0 and last_error is None


def create_key(intent: Intent) -> str | None:
    """The key of the create an update could be folded into, or None if it cannot be."""
    if intent.kind != UPDATE or intent.payload.get("fold") is False:
        return None
    target = intent.payload.get("target")
    fields = intent.payload.get("fields")
    if not isinstance(target, str) or not isinstance(fields, Mapping) or _has_ref(fields):
        return None
    return f"{intent.call_id}:{target}"


def fold(
    create: Mapping[str, Any], update: Intent, between: Iterable[tuple[str, str]]
) -> str | None:
    """Return the create's payload as JSON with `update` folded in, or None to refuse.

    Args:
        create: The payload of the create entry keyed `create_key(update)`, which the
            caller has checked with `open_create`.
        update: The update being appended.
        between: ``(kind, payload JSON)`` of each entry of the call after the create that is
            not done yet.
    """
    name = create.get("name")
    target = update.payload["target"]
    fields = create.get("fields")
    correlation = create.get("correlation")
    if (
        name != target
        or create.get("table") != update.payload.get("table")
        or not isinstance(fields, Mapping)
        or not isinstance(correlation, list)
        or not correlation
        or correlation[0] in update.payload["fields"]
    ):
        return None
    for kind, payload in between:
        if kind == CREATE:
            continue
        if kind != UPDATE or json.loads(payload).get("target") == target:
            return None
    merged = {
        **create,
        "fields": {**fields, **update.payload["fields"]},
        FOLDED: [*create.get(FOLDED, ()), update.key],
    }
    text = to_json(merged)
    if (len(text) if text.isascii() else len(text.encode("utf-8"))) > MAX_PAYLOAD_BYTES:
        return None
    return text


def folded_result(create: str) -> str:
    """The `result` JSON of an update folded into the create keyed `create`."""
    return to_json({"folded_into": create})


def _has_ref(value: object) -> bool:
    if isinstance(value, Mapping):
        return "$ref" in value or any(_has_ref(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_ref(v) for v in value)
    return False
