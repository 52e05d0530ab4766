"""Value types shared by every layer: calls, agents and the rules their fields follow.

All of them are frozen attrs classes that validate at construction. A bad value raises
`InvalidInput` naming the field and the rule, so nothing half-built ever reaches the router.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final

import attrs

from ._errors import InvalidInput

__all__ = [
    "Agent",
    "Call",
    "mask_phone",
]

_ID_RE: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_E164_RE: Final = re.compile(r"\+[1-9][0-9]{6,14}")
_SYS_ID_RE: Final = re.compile(r"[0-9a-f]{32}")

#: Limits on the free-form parts of a call, so that no adapter can grow memory without bound or
#: send ServiceNow a field it would truncate.
MAX_ATTRIBUTES: Final = 32
MAX_ATTRIBUTE_KEY: Final = 64
MAX_ATTRIBUTE_VALUE: Final = 1024
MAX_SKILLS: Final = 64
MAX_PRIORITY: Final = 1000

_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})


def _shown(value: object, limit: int = 40) -> str:
    """Return a short repr of a rejected value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_identifier(field: str, value: object) -> str:
    """Return `value` if it is a valid identifier, else raise `InvalidInput`.

    Identifiers (call, agent, queue, node ids) are 1-64 characters of letters, digits and
    ``._:-``: safe in an encoded query, a URL path and a log line alike.
    """
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise InvalidInput(
            f"{field}: {_shown(value)} is not a valid identifier; use 1-64 characters of "
            "letters, digits and '._:-' (a UUID works)",
            field=field,
        )
    return value


def check_phone(field: str, value: object) -> str:
    """Return `value` if it is an E.164 number, else raise `InvalidInput`."""
    if not isinstance(value, str) or not _E164_RE.fullmatch(value):
        # The rejected value may be a real number: show only its shape.
        shape = mask_phone(value) if isinstance(value, str) else type(value).__name__
        raise InvalidInput(
            f"{field}: {shape!r} is not an E.164 number; send '+', the country code and the "
            "subscriber number, digits only (8 to 15 digits, e.g. '+14155550100')",
            field=field,
        )
    return value


def check_sys_id(field: str, value: object) -> str:
    """Return `value` if it is a ServiceNow sys_id (32 lowercase hex), else raise."""
    if not isinstance(value, str) or not _SYS_ID_RE.fullmatch(value):
        raise InvalidInput(
            f"{field}: {_shown(value)} is not a ServiceNow sys_id; expected 32 lowercase "
            "hexadecimal characters",
            field=field,
        )
    return value


def mask_phone(number: str) -> str:
    """Mask a phone number for logs: keep the '+', the first two and the last two digits.

    >>> mask_phone("+14155550100")
    '+14*******00'
    """
    if len(number) <= 5:
        return "*" * len(number)
    return number[:3] + "*" * (len(number) - 5) + number[-2:]


def _identifier_validator(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    check_identifier(attribute.name, value)


def _names(field: str, value: Iterable[str] | None) -> frozenset[str]:
    """`value` as a set of names (skills, scopes), refusing what is not one."""
    if value is None:
        return frozenset()
    if isinstance(value, str):
        # A bare string would otherwise become a set of its characters.
        return frozenset((value,))
    if not isinstance(value, Iterable) or isinstance(value, bytes | Mapping):
        raise InvalidInput(
            f"{field}: expected a collection of names, got {type(value).__name__}", field=field
        )
    items = list(value)
    if not all(isinstance(item, str) for item in items):
        raise InvalidInput(f"{field}: every name must be a string", field=field)
    return frozenset(items)


def _to_skills(value: Iterable[str] | None) -> frozenset[str]:
    return _names("skills", value)


def _to_scopes(value: Iterable[str] | None) -> frozenset[str]:
    return _names("scopes", value)


def _check_skills(instance: object, attribute: attrs.Attribute[Any], value: frozenset[str]) -> None:
    if len(value) > MAX_SKILLS:
        raise InvalidInput(
            f"{attribute.name}: {len(value)} names given, at most {MAX_SKILLS} are allowed",
            field=attribute.name,
        )
    for skill in value:
        check_identifier(attribute.name, skill)


def _to_attributes(value: Mapping[str, str] | None) -> Mapping[str, str]:
    if not value:
        return _EMPTY
    if not isinstance(value, Mapping):
        raise InvalidInput("attributes: expected a mapping of str to str", field="attributes")
    return MappingProxyType(dict(value))


def _check_attributes(
    instance: object, attribute: attrs.Attribute[Any], value: Mapping[str, str]
) -> None:
    if len(value) > MAX_ATTRIBUTES:
        raise InvalidInput(
            f"attributes: {len(value)} entries given, at most {MAX_ATTRIBUTES} are allowed",
            field="attributes",
        )
    for key, item in value.items():
        if not isinstance(key, str) or not 0 < len(key) <= MAX_ATTRIBUTE_KEY:
            raise InvalidInput(
                f"attributes: key {_shown(key)} must be a string of 1-{MAX_ATTRIBUTE_KEY} "
                "characters",
                field="attributes",
            )
        if not isinstance(item, str) or len(item) > MAX_ATTRIBUTE_VALUE:
            raise InvalidInput(
                f"attributes[{key!r}]: values must be strings of at most "
                f"{MAX_ATTRIBUTE_VALUE} characters",
                field="attributes",
            )


def _check_priority(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PRIORITY:
        raise InvalidInput(
            f"priority: {_shown(value)} is not allowed; use a whole number from 0 to "
            f"{MAX_PRIORITY} (higher is served first)",
            field="priority",
        )


def _check_time(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise InvalidInput(
            f"{attribute.name}: {_shown(value)} is not a time; pass the clock's now() in seconds",
            field=attribute.name,
        )


def _check_caller(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        check_phone("caller", value)


@attrs.frozen
class Call:
    """A call offered to the contact center.

    Attributes:
        call_id: The adapter's id for the call: 1-64 letters, digits and ``._:-``.
        caller: The caller's number in E.164 (``+14155550100``), or None when withheld.
        queue: The queue the call waits in.
        arrived: When the call arrived, on the clock passed to the router (seconds).
        priority: 0-1000; a higher priority is offered first, then arrival order.
        skills: Skills an agent needs to be offered this call.
        attributes: Free-form strings the adapter wants to keep with the call
            (at most 32 entries, keys up to 64 and values up to 1024 characters).
    """

    call_id: str = attrs.field(validator=_identifier_validator)
    caller: str | None = attrs.field(validator=_check_caller)
    queue: str = attrs.field(validator=_identifier_validator)
    arrived: float = attrs.field(validator=_check_time)
    priority: int = attrs.field(default=0, validator=_check_priority)
    skills: frozenset[str] = attrs.field(
        default=frozenset(), converter=_to_skills, validator=_check_skills
    )
    attributes: Mapping[str, str] = attrs.field(
        default=_EMPTY,
        converter=_to_attributes,
        validator=_check_attributes,
        hash=False,
        repr=False,
    )

    def __repr__(self) -> str:
        caller = mask_phone(self.caller) if self.caller else None
        return (
            f"Call(call_id={self.call_id!r}, caller={caller!r}, queue={self.queue!r}, "
            f"priority={self.priority})"
        )


def _to_queues(value: Mapping[str, int] | Iterable[str]) -> tuple[tuple[str, int], ...]:
    if isinstance(value, str):
        # A bare string would otherwise become a set of its characters.
        return ((value, 1),)
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, Iterable):
        pairs = [(name, 1) for name in value]
    else:
        raise InvalidInput(
            "queues: give queue names, or a mapping of queue name to tier level", field="queues"
        )
    if not all(isinstance(name, str) for name, _ in pairs):
        raise InvalidInput("queues: every queue name must be a string", field="queues")
    return tuple(sorted(pairs))


def _check_queues(
    instance: object, attribute: attrs.Attribute[Any], value: tuple[tuple[str, int], ...]
) -> None:
    names = [queue for queue, _ in value]
    if len(names) != len(set(names)):
        raise InvalidInput("queues: each queue may be listed once", field="queues")
    for queue, level in value:
        check_identifier("queues", queue)
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 99:
            raise InvalidInput(
                f"queues[{queue!r}]: tier level {_shown(level)} is not allowed; use 1 (offered "
                "first) to 99",
                field="queues",
            )


def _check_optional_sys_id(
    instance: object, attribute: attrs.Attribute[Any], value: object
) -> None:
    if value is not None:
        check_sys_id(attribute.name, value)


@attrs.frozen
class Agent:
    """An agent who can be offered calls.

    Attributes:
        agent_id: The adapter's id for the agent: 1-64 letters, digits and ``._:-``.
        queues: The queues the agent serves, as ``{queue: tier level}`` (level 1 is offered
            first) or as a list of queue names (all at level 1).
        skills: The agent's skills; a call is offered only to agents having all it needs.
        node: The site the agent works from. When its link is down the agent is offered
            nothing.
        user_sys_id: The agent's `sys_user` sys_id in ServiceNow, used for `assigned_to`.
        scopes: The scopes the agent works in (an account, a region, both: names are the
            adapter's, e.g. ``{"region:emea", "account:acme"}``); resiliency modes switch per
            scope. None given: the engine's default scope.
    """

    agent_id: str = attrs.field(validator=_identifier_validator)
    queues: tuple[tuple[str, int], ...] = attrs.field(
        default=(), converter=_to_queues, validator=_check_queues
    )
    skills: frozenset[str] = attrs.field(
        default=frozenset(), converter=_to_skills, validator=_check_skills
    )
    node: str = attrs.field(default="local", validator=_identifier_validator)
    user_sys_id: str | None = attrs.field(default=None, validator=_check_optional_sys_id)
    scopes: frozenset[str] = attrs.field(
        default=frozenset(), converter=_to_scopes, validator=_check_skills
    )

    def level(self, queue: str) -> int | None:
        """Return the agent's tier level in `queue`, or None when not a member."""
        for name, level in self.queues:
            if name == queue:
                return level
        return None
