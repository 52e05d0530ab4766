"""What the engine exchanges with an adapter: the channel it calls, its settings, its events."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeAlias, runtime_checkable

import attrs

from .._model import Agent, Call, check_identifier
from .._validators import seconds_above_zero
from ..health import IncidentChanged, Mode, ModeChanged, ModeConfig, NodeLinkChanged
from ..journal import DrainerConfig, RecordDead, RecordWritten
from ..resilience import BreakerStateChanged
from ..routing import (
    AgentNotReady,
    AgentPaused,
    CallAbandoned,
    CallConnected,
    CallEnded,
    CallOverflowed,
    CallRedirected,
    OfferOutcome,
    RouterConfig,
)
from ..servicenow import Auth
from ._records import RecordMapping

__all__ = [
    "AgentChannel",
    "AgentNotified",
    "CallOffered",
    "EndpointChanged",
    "EngineConfig",
    "EngineEvent",
    "InteractionCreated",
    "Notice",
    "Offer",
    "OfferEnded",
    "OfferRejected",
    "OfferTimedOut",
    "default_journal_path",
]


@attrs.frozen
class Offer:
    """An offer to an agent: ring until `deadline` (UNIX seconds).

    Attributes:
        call: The call.
        deadline: When the offer times out if not accepted, as a UNIX time.
        attempt: 1 for the call's first offer, 2 for the second...
    """

    call: Call
    deadline: float
    attempt: int


@attrs.frozen
class Notice:
    """A message for an agent (a mode change, for example).

    Attributes:
        kind: What it is about, e.g. ``"mode"``.
        text: What to show the agent.
        data: Details for the adapter, JSON-ready.
    """

    kind: str
    text: str
    data: dict[str, Any] = attrs.field(factory=dict, eq=False)


@runtime_checkable
class AgentChannel(Protocol):
    """What the adapter implements so the engine can reach agents.

    Every method should return quickly (hand the work to the platform); an exception from
    `offer` is the "unreachable" outcome and the call goes to the next agent.
    """

    async def offer(self, agent: Agent, offer: Offer) -> None:
        """Ring `agent` with `offer`."""
        ...

    async def withdraw(self, agent: Agent, call_id: str, reason: OfferOutcome) -> None:
        """Stop ringing `agent` for `call_id` (timed out, caller hung up...)."""
        ...

    async def notify(self, agent: Agent, notice: Notice) -> None:
        """Show `agent` a notice."""
        ...

    async def transfer(
        self, agent: Agent, call_id: str, target: str, interaction_sys_id: str
    ) -> None:
        """Transfer the call `agent` is on to `target` (a queue, an agent, a number)."""
        ...


@attrs.frozen
class CallOffered:
    """The engine offered a call to an agent."""

    call_id: str
    agent_id: str
    deadline: float
    attempt: int


@attrs.frozen
class OfferRejected:
    """An agent rejected an offer, with the reason the adapter gave, if any."""

    call_id: str
    agent_id: str
    reason: str | None


@attrs.frozen
class OfferTimedOut:
    """An offer rang out; the call was redirected and the miss recorded."""

    call_id: str
    agent_id: str
    attempt: int


@attrs.frozen
class OfferEnded:
    """An offer ended without an accept and its call overflowed instead of going back in line.

    It stands for the `CallRedirected` the offer would have had, and comes just before the
    call's `CallOverflowed`: every offer that ends without an accept is reported once with
    its outcome, in `CallRedirected` or here (or in `CallAbandoned` when the caller hung up).
    A rejected or unanswered offer also has its `OfferRejected` or `OfferTimedOut`.
    """

    call_id: str
    agent_id: str
    outcome: OfferOutcome


@attrs.frozen
class InteractionCreated:
    """The call's Interaction exists on the instance."""

    call_id: str
    sys_id: str


@attrs.frozen
class AgentNotified:
    """The engine sent an agent a mode notice (`forced`: again, unacknowledged in time)."""

    agent_id: str
    notice_id: int
    scope: str
    mode: Mode
    forced: bool


@attrs.frozen
class EndpointChanged:
    """Requests to the instance go to `new` instead of `old` now.

    `reason` is the failure that moved the client on (``"ConnectError"``...), or
    ``"failback"`` when the engine moved back to the primary.
    """

    old: str
    new: str
    reason: str


EngineEvent: TypeAlias = (
    CallOffered
    | CallConnected
    | CallRedirected
    | OfferRejected
    | OfferTimedOut
    | OfferEnded
    | CallAbandoned
    | CallOverflowed
    | CallEnded
    | AgentPaused
    | AgentNotReady
    | InteractionCreated
    | RecordWritten
    | RecordDead
    | BreakerStateChanged
    | ModeChanged
    | AgentNotified
    | IncidentChanged
    | NodeLinkChanged
    | EndpointChanged
)


def default_journal_path() -> Path:
    """Where the journal lives unless the config names a file: the user's state folder.

    ``$XDG_STATE_HOME/callresilience/journal.db`` (``~/.local/state/...`` when unset) on
    POSIX systems, ``%LOCALAPPDATA%\\callresilience\\journal.db`` on Windows. Services
    should name a file on a local disk they own instead.
    """
    return journal_path_for(os.name, os.environ, Path.home())


def journal_path_for(system: str, environ: Mapping[str, str], home: Path) -> Path:
    """`default_journal_path` for a given `os.name`, environment and home folder."""
    if system == "nt":
        base = Path(environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    else:
        base = Path(environ.get("XDG_STATE_HOME") or home / ".local" / "state")
    return base / "callresilience" / "journal.db"


def _urls(value: str | Sequence[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _scope(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    check_identifier(attribute.name, value)


#: Checks whether a transfer target (a queue, an agent, a number) can take a call now.
TransferCheck: TypeAlias = Callable[[str], Awaitable[bool]]


@attrs.frozen
class EngineConfig:
    """Everything an engine needs; only the instance and its credentials are required.

    Attributes:
        instance: The instance's base URL, or several to fail over between.
        auth: How to authenticate (`BasicAuth`, `OAuth2ClientCredentials`, ...).
        journal: The SQLite journal's file (default: `default_journal_path()`; its folder
            is created if missing), or None to keep the journal in memory (lost on
            restart: for tests only).
        router: Routing settings (offer timeout, strategies, queues...).
        drainer: How the journal is drained (concurrency, breaker, pacing...).
        records: Table and field names on the instance.
        auto_accept: Connect an offered call at once, as platforms with auto-answer do.
        open_interaction_timeout: How long `open_interaction` waits for the instance.
        read_timeout: The client's read timeout, in seconds.
        modes: When a scope enters and leaves resiliency mode (hysteresis).
        default_scope: The scope of agents that name none.
        notice_deadline: Seconds an agent has to acknowledge a mode notice before it is sent
            again as forced.
        node_timeout: Seconds without a heartbeat after which a watched node is unreachable.
        failback_after: Seconds the primary URL must answer probes before the engine moves
            back to it from a secondary.
        failback_probe_every: Seconds between probes of the primary while on a secondary.
        transfer_check: An async function the engine asks before a transfer; False (or an
            error, or no answer within `transfer_check_timeout`) refuses the transfer.
        transfer_check_timeout: Seconds to wait for `transfer_check`.
    """

    instance: tuple[str, ...] = attrs.field(converter=_urls)
    auth: Auth = attrs.field(repr=False)
    journal: Path | None = attrs.field(
        factory=default_journal_path,
        converter=attrs.converters.optional(Path),
    )
    router: RouterConfig = attrs.field(factory=RouterConfig)
    drainer: DrainerConfig = attrs.field(factory=DrainerConfig)
    records: RecordMapping = attrs.field(factory=RecordMapping)
    auto_accept: bool = False
    open_interaction_timeout: float = attrs.field(default=5.0, validator=seconds_above_zero)
    read_timeout: float = attrs.field(default=30.0, validator=seconds_above_zero)
    modes: ModeConfig = attrs.field(factory=ModeConfig)
    default_scope: str = attrs.field(default="default", validator=_scope)
    notice_deadline: float = attrs.field(default=30.0, validator=seconds_above_zero)
    node_timeout: float = attrs.field(default=15.0, validator=seconds_above_zero)
    failback_after: float = attrs.field(default=60.0, validator=seconds_above_zero)
    failback_probe_every: float = attrs.field(default=10.0, validator=seconds_above_zero)
    transfer_check: TransferCheck | None = attrs.field(default=None, eq=False, repr=False)
    transfer_check_timeout: float = attrs.field(default=2.0, validator=seconds_above_zero)
