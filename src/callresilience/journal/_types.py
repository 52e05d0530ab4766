"""The journal's vocabulary: intents the engine appends and the entries the store keeps.

An entry moves through a small state table (the one place the transitions are written)::

    append ──> PENDING ──claim──> IN_FLIGHT ──complete──> DONE
                  ^                 │  │ ^
                  │<────retry───────┘  │ └─claim (lease ran out)
                  │                    └──kill──> DEAD
                  └──────────────replay──────────┘
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Iterator, Mapping
from typing import Any, Final

import attrs

from .._errors import InvalidInput
from .._model import check_identifier

__all__ = ["Entry", "EntryState", "Intent"]

#: Limits on what one intent may carry, so one bad adapter cannot bloat the journal.
MAX_KIND: Final = 128
MAX_KEY: Final = 128
MAX_PAYLOAD_BYTES: Final = 64 * 1024
MAX_OWNER: Final = 128
MAX_GROUP: Final = 256
MAX_RESULT_NAME: Final = 64
MAX_RESULT_VALUE: Final = 256
#: Longer error texts are cut, not refused: the failure must be recorded whatever it says.
MAX_ERROR: Final = 4096


class EntryState(enum.Enum):
    """Where an entry is in its life (see the module docstring for the transitions).

    Attributes:
        PENDING: Waiting to run, at or after `Entry.next_attempt`.
        IN_FLIGHT: Claimed by a worker until `Entry.lease_until`.
        DONE: Its effect happened; the result is stored.
        DEAD: Refused for good; waits for an operator to replay it.
    """

    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    DONE = "done"
    DEAD = "dead"


#: The table of transitions: operation -> (states it accepts, state it leads to).
TRANSITIONS: Final[Mapping[str, tuple[frozenset[EntryState], EntryState]]] = {
    "claim": (frozenset({EntryState.PENDING, EntryState.IN_FLIGHT}), EntryState.IN_FLIGHT),
    "complete": (frozenset({EntryState.IN_FLIGHT}), EntryState.DONE),
    "retry": (frozenset({EntryState.IN_FLIGHT}), EntryState.PENDING),
    "kill": (frozenset({EntryState.IN_FLIGHT}), EntryState.DEAD),
    "replay": (frozenset({EntryState.DEAD}), EntryState.PENDING),
}


#: Compact JSON as the stores keep it (one encoder, not one per call). It skips the check for
#: circular references: a payload that contains itself ends in `RecursionError` instead.
to_json: Final = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, check_circular=False
).encode


def encode_json(field: str, value: object, limit: int = MAX_PAYLOAD_BYTES) -> str:
    """Return `value` (a mapping) as compact JSON, or raise `InvalidInput`.

    The store keeps the text; every entry it returns carries a fresh decoded copy (a
    `JsonObject`), so what a caller reads is exactly what survives a restart.
    """
    if not isinstance(value, Mapping):
        raise InvalidInput(
            f"{field}: expected a mapping (a JSON object), got {type(value).__name__}",
            field=field,
        )
    try:
        text = to_json(value if type(value) is dict else dict(value))
    except (TypeError, ValueError, RecursionError) as error:
        reason = (
            "nested too deep, or contains itself" if isinstance(error, RecursionError) else error
        )
        raise InvalidInput(
            f"{field}: not JSON-serialisable ({reason}); use dicts, lists, strings, numbers, "
            "booleans and None",
            field=field,
        ) from None
    size = len(text) if text.isascii() else len(text.encode("utf-8"))
    if size > limit:
        raise InvalidInput(
            f"{field}: {size} bytes encoded, at most {limit} are allowed; keep large data "
            "outside the journal and store a reference",
            field=field,
        )
    return text


class JsonObject(Mapping[str, Any]):
    """A read-only JSON object: the text a store holds, decoded on first read.

    `Entry.payload` and `Entry.result` come this way. Most entries a store returns (those of
    an append or a finish) are never read, and those that are decode once; each object
    decodes its own copy, so no caller sees another's changes. It is a `Mapping`, not a
    `dict`: use ``dict(entry.payload)`` where a dict is needed (``json.dumps``, say).
    """

    __slots__ = ("_text", "_value")

    def __init__(self, text: str) -> None:
        self._text = text
        self._value: dict[str, Any] | None = None

    def _decoded(self) -> dict[str, Any]:
        if self._value is None:
            self._value = json.loads(self._text)
        return self._value

    def __getitem__(self, key: str) -> Any:
        return self._decoded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __contains__(self, key: object) -> bool:
        return key in self._decoded()

    def get(self, key: str, default: Any = None) -> Any:
        """The value of `key`, else `default`."""
        return self._decoded().get(key, default)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, JsonObject):
            return self._decoded() == other._decoded()
        if isinstance(other, Mapping):
            return self._decoded() == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # unhashable, as a dict

    def __repr__(self) -> str:
        return repr(self._decoded())


def check_text(field: str, value: object, limit: int) -> str:
    """Return `value` if it is a non-empty string of at most `limit` characters."""
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise InvalidInput(
            f"{field}: expected a non-empty string of at most {limit} characters",
            field=field,
        )
    return value


def _kind_validator(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    check_text("kind", value, MAX_KIND)


def _key_validator(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    check_text("key", value, MAX_KEY)


def _group_validator(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value != "":
        check_text("group", value, MAX_GROUP)


def _call_id_validator(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    check_identifier("call_id", value)


@attrs.frozen
class Intent:
    """A write the engine wants done in ServiceNow, some time, exactly once.

    Validated at construction: a bad intent raises `InvalidInput` before it reaches a store.

    Attributes:
        call_id: The call it belongs to: 1-64 letters, digits and ``._:-``.
        kind: What to do, e.g. ``"create_phone_log"`` (1-128 characters).
        payload: The request as a JSON object, at most 64 KiB encoded. The store treats it as
            opaque; placeholders such as ``{"$ref": "phone_log"}`` are the drainer's business.
        key: The idempotency key, unique across the journal (1-128 characters), e.g.
            ``f"{call_id}:phone_log"``. Appending a key that is already there is a no-op.
        group: A label for holding entries back together (the engine uses the scopes of the
            call's agent): a claim may skip named groups. Empty for none.
    """

    call_id: str = attrs.field(validator=_call_id_validator)
    kind: str = attrs.field(validator=_kind_validator)
    payload: Mapping[str, Any] = attrs.field(hash=False, repr=False)
    key: str = attrs.field(validator=_key_validator)
    group: str = attrs.field(default="", validator=_group_validator)
    _payload_json: str = attrs.field(init=False, eq=False, hash=False, repr=False)

    def __attrs_post_init__(self) -> None:
        # Encoded once here, so a store can write it without checking it again.
        object.__setattr__(self, "_payload_json", encode_json("payload", self.payload))

    @property
    def payload_json(self) -> str:
        """The payload as the compact JSON text the store writes."""
        return self._payload_json


@attrs.frozen
class Entry:
    """One journaled intent as the store holds it. Times are UNIX seconds.

    Attributes:
        entry_id: The store's id for the entry, unique and never reused.
        call_id: The call it belongs to.
        seq: Its place among the call's entries (1, 2, 3, ... in append order).
        kind: What to do.
        payload: The request, as appended (a store returns a `JsonObject`).
        key: The idempotency key.
        state: Where the entry is in its life.
        attempts: How many times it was claimed since it was appended or replayed.
        next_attempt: When a pending entry may run.
        lease_owner: The worker holding it while in flight, else None.
        lease_until: When the worker's lease runs out while in flight, else None.
        last_error: Why the last attempt failed, if it did.
        created: When it was appended.
        updated: When it last changed state.
        result: What `complete` stored, when done (a `JsonObject` from a store).
        group: The intent's group ("" for none).
    """

    entry_id: int
    call_id: str
    seq: int
    kind: str
    payload: Mapping[str, Any] = attrs.field(hash=False, repr=False)
    key: str
    state: EntryState
    attempts: int
    next_attempt: float
    lease_owner: str | None
    lease_until: float | None
    last_error: str | None
    created: float
    updated: float
    result: Mapping[str, Any] | None = attrs.field(hash=False, repr=False)
    group: str = ""


def check_time(field: str, value: object) -> float:
    """Return `value` as a float if it is a finite number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(
            f"{field}: {value!r} is not a time; pass the clock's time() in UNIX seconds",
            field=field,
        )
    return float(value)


def check_duration(field: str, value: object) -> float:
    """Return `value` as a float if it is a finite, positive number of seconds."""
    seconds = check_time(field, value)
    if seconds <= 0:
        raise InvalidInput(f"{field}: {value!r} must be more than zero seconds", field=field)
    return seconds


def check_count(field: str, value: object, minimum: int) -> int:
    """Return `value` if it is a whole number of at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInput(
            f"{field}: {value!r} is not allowed; use a whole number of at least {minimum}",
            field=field,
        )
    return value


def check_entry_id(value: object) -> int:
    """Return `value` if it can be an entry id."""
    return check_count("entry_id", value, 1)


def check_owner(value: object) -> str:
    """Return `value` if it can name a worker."""
    return check_text("owner", value, MAX_OWNER)


def check_intents(intents: object) -> list[Intent]:
    """Return `intents` as a list if every item is an `Intent`, else raise `InvalidInput`."""
    if isinstance(intents, Intent | str | bytes | Mapping) or not hasattr(intents, "__iter__"):
        raise InvalidInput("intents: expected a sequence of Intent objects", field="intents")
    batch = list(intents)
    for item in batch:
        if not isinstance(item, Intent):
            raise InvalidInput(
                f"intents: {type(item).__name__} is not an Intent; build each with "
                "Intent(call_id, kind, payload, key)",
                field="intents",
            )
    return batch


def check_groups(groups: object) -> frozenset[str]:
    """Return the groups a claim skips, as a set of strings."""
    if isinstance(groups, str | bytes) or not hasattr(groups, "__iter__"):
        raise InvalidInput(
            "skip_groups: expected a collection of group names, e.g. {'region:eu'}",
            field="skip_groups",
        )
    names = frozenset(groups)
    if not all(isinstance(name, str) for name in names):
        raise InvalidInput("skip_groups: every group name must be a string", field="skip_groups")
    return names


def check_results(results: object) -> dict[str, str]:
    """Return a call-results mapping (name -> sys_id) if it is well formed."""
    if results is None:
        return {}
    if not isinstance(results, Mapping):
        raise InvalidInput("results: expected a mapping of str to str", field="results")
    checked: dict[str, str] = {}
    for name, value in results.items():
        check_text("results", name, MAX_RESULT_NAME)
        checked[name] = check_text(f"results[{name!r}]", value, MAX_RESULT_VALUE)
    return checked


def clip_error(error: object) -> str:
    """Return the error text, cut to `MAX_ERROR` characters."""
    if not isinstance(error, str):
        raise InvalidInput("error: expected a string saying what went wrong", field="error")
    return error if len(error) <= MAX_ERROR else error[: MAX_ERROR - 3] + "..."


def check_state(state: object) -> EntryState | None:
    """Return `state` if it is None or an `EntryState`."""
    if state is None or isinstance(state, EntryState):
        return state
    raise InvalidInput(f"state: {state!r} is not an EntryState (or None for all)", field="state")
