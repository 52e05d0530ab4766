"""What ServiceNow must end up holding for each call: a pure mapping from call events to intents.

No I/O and no clock: every function takes the times it needs and returns journal intents. The
table and field names come from `RecordMapping`, so an instance with custom tables or a
`u_` correlation field is a setting, not a fork.

Per call (defaults):

- accepted: a phone log and an Interaction (phone, inbound, work in progress, assigned to the
  agent) pointing at the phone log; if a timed-out offer already created the Interaction, it
  is updated instead, never created twice;
- offer timed out: the Interaction (new, unassigned) once, and a work item per missed offer;
- hold / resume: the Interaction's state, when enabled;
- ended: the phone log's end time and duration; the Interaction closed complete, or closed
  abandoned when no agent ever took the call.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any, Final

import attrs

from .._model import Agent, Call, check_identifier
from ..journal import Intent, create_intent, update_intent

__all__ = ["CallRecords", "RecordMapping", "servicenow_time"]

PHONE_LOG: Final = "phone_log"
INTERACTION: Final = "interaction"
_FORMAT: Final = "%Y-%m-%d %H:%M:%S"  # ServiceNow's date and time


def servicenow_time(unix: float) -> str:
    """Format a UNIX time as ServiceNow's ``YYYY-MM-DD HH:MM:SS`` (UTC)."""
    if math.isfinite(unix):
        return _utc_second(math.floor(unix))  # `gmtime` rounds down to the second too
    return time.strftime(_FORMAT, time.gmtime(unix))  # which says what is wrong with it


@functools.lru_cache(maxsize=1)
def _utc_second(second: int) -> str:
    """One second, formatted (cached: a busy engine writes many records a second)."""
    return time.strftime(_FORMAT, time.gmtime(second))


def _field_name(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    check_identifier(attribute.name, value)


@attrs.frozen
class RecordMapping:
    """Table and field names on the instance.

    Attributes:
        phone_log_table: The phone log table.
        interaction_table: The Interaction table.
        work_item_table: Where a missed offer is recorded.
        interaction_correlation: The Interaction field that holds the call id, used to find
            an Interaction whose creation had an unknown outcome (``correlation_id``, or a
            ``u_`` field of your own).
        work_item_correlation: The same for work items.
        phone_log_call_type: The phone log's `call_type` for inbound calls.
        record_holds: Write hold and resume to the Interaction's state.
        fold_updates: Let the journal fold a record's later updates into its create while
            that has not run yet, so a backlog drains with one POST per record carrying the
            final state. Set False if business rules on the instance must see each update
            (an Interaction is then inserted as new, and updated to closed).
    """

    phone_log_table: str = attrs.field(default="sn_openframe_phone_log", validator=_field_name)
    interaction_table: str = attrs.field(default="interaction", validator=_field_name)
    work_item_table: str = attrs.field(default="awa_work_item", validator=_field_name)
    interaction_correlation: str = attrs.field(default="correlation_id", validator=_field_name)
    work_item_correlation: str = attrs.field(default="correlation_id", validator=_field_name)
    phone_log_call_type: str = attrs.field(default="inbound", validator=_field_name)
    record_holds: bool = True
    fold_updates: bool = True


@attrs.frozen
class CallRecords:
    """Builds the intents for one mapping."""

    mapping: RecordMapping = attrs.field(factory=RecordMapping)

    def phone_log(self, call: Call, agent: Agent, at: float, *, group: str = "") -> Intent:
        """The phone log of a call an agent took."""
        m = self.mapping
        fields: dict[str, Any] = {
            "call_id": call.call_id,
            "start_time": servicenow_time(at),
            "call_type": m.phone_log_call_type,
        }
        if call.caller:
            fields["phone_number"] = call.caller
        if agent.user_sys_id:
            fields["agent"] = agent.user_sys_id
        return create_intent(
            call.call_id,
            PHONE_LOG,
            m.phone_log_table,
            fields,
            correlation=("call_id", call.call_id),
            group=group,
        )

    def interaction(
        self, call: Call, agent: Agent | None, *, linked: bool, group: str = ""
    ) -> Intent:
        """The Interaction: assigned and in progress with an agent, else new and unassigned."""
        m = self.mapping
        fields: dict[str, Any] = {
            "type": "phone",
            "direction": "inbound",
            "state": "work_in_progress" if agent else "new",
            m.interaction_correlation: call.call_id,
        }
        if call.caller:
            fields["caller_phone_number"] = call.caller
        if agent and agent.user_sys_id:
            fields["assigned_to"] = agent.user_sys_id
        if linked:
            fields["channel_metadata_table"] = m.phone_log_table
            fields["channel_metadata_document"] = {"$ref": PHONE_LOG}
        return create_intent(
            call.call_id,
            INTERACTION,
            m.interaction_table,
            fields,
            correlation=(m.interaction_correlation, call.call_id),
            group=group,
        )

    def accepted(
        self, call: Call, agent: Agent, at: float, *, interaction_exists: bool, group: str = ""
    ) -> list[Intent]:
        """The records of an accepted call."""
        intents = [self.phone_log(call, agent, at, group=group)]
        if not interaction_exists:
            intents.append(self.interaction(call, agent, linked=True, group=group))
            return intents
        fields: dict[str, Any] = {
            "state": "work_in_progress",
            "channel_metadata_table": self.mapping.phone_log_table,
            "channel_metadata_document": {"$ref": PHONE_LOG},
        }
        if agent.user_sys_id:
            fields["assigned_to"] = agent.user_sys_id
        intents.append(
            update_intent(
                call.call_id,
                "accepted",
                self.mapping.interaction_table,
                INTERACTION,
                fields,
                group=group,
                fold=self.mapping.fold_updates,
            )
        )
        return intents

    def timed_out(
        self,
        call: Call,
        agent: Agent,
        attempt: int,
        at: float,
        *,
        interaction_exists: bool,
        group: str = "",
    ) -> list[Intent]:
        """The Interaction (once) and a work item for an offer that rang out."""
        m = self.mapping
        intents = (
            [] if interaction_exists else [self.interaction(call, None, linked=False, group=group)]
        )
        correlation = f"{call.call_id}:missed-{attempt}"
        fields: dict[str, Any] = {
            "document_table": m.interaction_table,
            "document_id": {"$ref": INTERACTION},
            "state": "cancelled",
            "cancel_reason": "time_out",
            "offered_on": servicenow_time(at),
            "offer_count": str(attempt),
            m.work_item_correlation: correlation,
        }
        if agent.user_sys_id:
            fields["assigned_to"] = agent.user_sys_id
        intents.append(
            create_intent(
                call.call_id,
                f"missed-{attempt}",
                m.work_item_table,
                fields,
                correlation=(m.work_item_correlation, correlation),
                group=group,
            )
        )
        return intents

    def opened(
        self, call: Call, agent: Agent | None, *, linked: bool, group: str = ""
    ) -> list[Intent]:
        """The Interaction an agent asked for ahead of the queue."""
        return [self.interaction(call, agent, linked=linked, group=group)]

    def held(self, call: Call, hold: bool, serial: int, *, group: str = "") -> list[Intent]:
        """The Interaction's state after a hold or a resume (when enabled)."""
        if not self.mapping.record_holds:
            return []
        state = "on_hold" if hold else "work_in_progress"
        return [
            update_intent(
                call.call_id,
                f"hold-{serial}",
                self.mapping.interaction_table,
                INTERACTION,
                {"state": state},
                group=group,
                fold=self.mapping.fold_updates,
            )
        ]

    def ended(
        self,
        call: Call,
        *,
        started: float | None,
        ended: float,
        answered: bool,
        interaction_exists: bool,
        group: str = "",
    ) -> list[Intent]:
        """Close what exists: the phone log's end and duration, the Interaction's state."""
        m = self.mapping
        intents: list[Intent] = []
        if answered and started is not None:
            intents.append(
                update_intent(
                    call.call_id,
                    "phone-log-end",
                    m.phone_log_table,
                    PHONE_LOG,
                    {
                        "end_time": servicenow_time(ended),
                        "duration": str(max(0, round(ended - started))),
                    },
                    group=group,
                    fold=m.fold_updates,
                )
            )
        if interaction_exists:
            state = "closed_complete" if answered else "closed_abandoned"
            intents.append(
                update_intent(
                    call.call_id,
                    "closed",
                    m.interaction_table,
                    INTERACTION,
                    {"state": state},
                    group=group,
                    fold=self.mapping.fold_updates,
                )
            )
        return intents
