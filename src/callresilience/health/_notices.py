"""Telling agents about a mode change: at once when idle, after the call when busy. Pure.

When a scope switches mode, each of its agents gets a notice: an idle agent at once, a busy
one (ringing, on a call) as soon as that call is over, so nobody is interrupted mid-call.
An agent acknowledges a notice; one not acknowledged within `deadline` seconds of delivery is
sent again marked `forced`, the adapter's cue to switch the agent's desktop itself.

A notice not yet delivered is replaced by a newer change of the same scope, and dropped when the
scope is back in the mode the agent was last told about (an outage that came and went during
a call needs no notice at all).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from .._errors import InvalidInput
from .._validators import positive_seconds
from ._modes import Mode, ModeChanged

__all__ = ["ModeNotice", "NoticeBoard"]


@attrs.frozen
class ModeNotice:
    """A notice to send an agent now: `scope` is in `mode` (again, `forced`, if unheeded)."""

    agent_id: str
    notice_id: int
    scope: str
    mode: Mode
    reason: str
    forced: bool = False


@attrs.define
class _Waiting:
    notice: ModeNotice
    deadline: float | None = None  # set once delivered
    # The delivered, unacknowledged notice this one replaced: it is back in force if this one
    # is dropped (the scope returned to the mode that notice announced).
    replaced: _Waiting | None = None


class NoticeBoard:
    """Which agents must be told what, and who has not acknowledged.

    Args:
        deadline: Seconds after delivery before an unacknowledged notice is forced.
    """

    def __init__(self, deadline: float = 30.0) -> None:
        self._deadline = positive_seconds("deadline", deadline)
        self._next_id = 1
        # (agent, scope) -> the notice waiting for the call's end, or for an acknowledgement.
        self._waiting: dict[tuple[str, str], _Waiting] = {}
        # (agent, scope) -> the mode the agent was last told about (normal when never told).
        self._told: dict[tuple[str, str], Mode] = {}
        # notice id -> its agent, for every notice sent and not forgotten by `agent_gone`.
        self._issued: dict[int, str] = {}

    def __repr__(self) -> str:
        return f"<NoticeBoard waiting={len(self._waiting)}>"

    def mode_changed(
        self, change: ModeChanged, agents: Iterable[tuple[str, bool]], now: float
    ) -> list[ModeNotice]:
        """A scope switched; `agents` are its agents as ``(agent_id, busy)``.

        Returns:
            The notices to send now (to the idle agents).
        """
        out: list[ModeNotice] = []
        for agent_id, busy in agents:
            key = (agent_id, change.scope)
            current = self._waiting.get(key)
            if self._told.get(key, Mode.NORMAL) is change.new and not self._delivered(key):
                # Back where the agent was told: nothing new to say, and an earlier notice
                # still waiting for its acknowledgement is in force again.
                self._waiting.pop(key, None)
                if current is not None and current.replaced is not None:
                    self._waiting[key] = current.replaced
                continue
            notice = ModeNotice(agent_id, self._next_id, change.scope, change.new, change.reason)
            self._next_id += 1
            replaced = None
            if current is not None:
                replaced = current if current.deadline is not None else current.replaced
            self._waiting[key] = _Waiting(notice, replaced=replaced)
            if not busy:
                out.append(self._deliver(key, now))
        return out

    def agent_free(self, agent_id: str, now: float) -> list[ModeNotice]:
        """The agent's call is over: the notices that waited for it, to send now."""
        keys = [k for k, w in self._waiting.items() if k[0] == agent_id and w.deadline is None]
        return [self._deliver(key, now) for key in sorted(keys)]

    def agent_gone(self, agent_id: str) -> None:
        """The agent logged out: forget what it was told and was to be told.

        It learns the modes in force again at its next login.
        """
        for key in [k for k in self._waiting if k[0] == agent_id]:
            del self._waiting[key]
        for key in [k for k in self._told if k[0] == agent_id]:
            del self._told[key]
        for number in [n for n, a in self._issued.items() if a == agent_id]:
            del self._issued[number]

    def acknowledge(self, agent_id: str, notice_id: int | None = None) -> int:
        """The agent read its delivered notices (or the one `notice_id`); return how many.

        A notice of this agent already acknowledged or forced counts 0, so an adapter may
        acknowledge whatever the agent clicked.

        Raises:
            InvalidInput: `notice_id` was not sent to this agent, or not yet (it waits for
                the end of the agent's call).
        """
        keys = [
            k
            for k, w in self._waiting.items()
            if k[0] == agent_id
            and w.deadline is not None
            and (notice_id is None or w.notice.notice_id == notice_id)
        ]
        if notice_id is not None and not keys:
            held = any(
                w.notice.notice_id == notice_id and w.deadline is None
                for w in self._waiting.values()
            )
            if held or self._issued.get(notice_id) != agent_id:
                raise InvalidInput(
                    f"notice_id: {notice_id!r} is not a notice agent {agent_id!r} was sent; "
                    "pass the id from the Notice.data['notice_id'] the agent was shown",
                    field="notice_id",
                )
        for key in keys:
            del self._waiting[key]
        return len(keys)

    def advance(self, now: float) -> list[ModeNotice]:
        """Force every delivered notice whose deadline passed without an acknowledgement."""
        due = [k for k, w in self._waiting.items() if w.deadline is not None and w.deadline <= now]
        return [attrs.evolve(self._waiting.pop(key).notice, forced=True) for key in sorted(due)]

    def next_deadline(self) -> float | None:
        """When the next notice would be forced, or None."""
        times = [w.deadline for w in self._waiting.values() if w.deadline is not None]
        return min(times) if times else None

    def waiting_for_call_end(self) -> set[str]:
        """Agents with a notice held until their call is over."""
        if not self._waiting:
            return set()  # the usual case, asked after every routing step
        return {k[0] for k, w in self._waiting.items() if w.deadline is None}

    def outstanding(self) -> list[dict[str, Any]]:
        """Every notice not yet acknowledged, JSON-ready."""
        return [
            {
                "agent_id": w.notice.agent_id,
                "notice_id": w.notice.notice_id,
                "scope": w.notice.scope,
                "mode": w.notice.mode.value,
                "delivered": w.deadline is not None,
                "force_at": w.deadline,
            }
            for _, w in sorted(self._waiting.items())
        ]

    def _delivered(self, key: tuple[str, str]) -> bool:
        waiting = self._waiting.get(key)
        return waiting is not None and waiting.deadline is not None

    def _deliver(self, key: tuple[str, str], now: float) -> ModeNotice:
        waiting = self._waiting[key]
        waiting.deadline = now + self._deadline
        waiting.replaced = None  # superseded by what the agent is told now
        self._issued[waiting.notice.notice_id] = waiting.notice.agent_id
        self._told[key] = waiting.notice.mode
        return waiting.notice
