"""The exception tree.

Every error the library raises on purpose derives from `CallResilienceError`::

    CallResilienceError
    ├── InvalidInput                a value given to the library breaks a rule (also ValueError)
    │   └── UnsafeQueryValue        a value would change the structure of an encoded query
    ├── RoutingError                an event that the routing state does not allow
    │   ├── UnknownCall             no such call (never seen, or long finished)
    │   ├── UnknownAgent            no such agent (never logged in)
    │   ├── DuplicateCall           a call id that is already in use
    │   ├── OfferNotPending         accept/reject of an offer that expired, was withdrawn,
    │   │                           went to another agent, or was already answered
    │   ├── CallStateError          the call's state does not allow the event
    │   └── AgentStateError         the agent's status or activity does not allow the event
    ├── ServiceNowError             an instance answered badly, or not at all
    │   ├── TransientError          safe to retry after a pause (nothing was written)
    │   │   └── RateLimited         429; see `retry_after` and `rate_limit`
    │   ├── AmbiguousError          the request was sent and its effect is unknown
    │   ├── PermanentError          retrying will not help (400, 403, 404, 409, ...)
    │   └── AuthenticationError     401 after the one re-authentication
    ├── ItsmUnavailable             the instance cannot create the record right now
    ├── InteractionRequired         the action needs an Interaction the call does not have yet
    └── TransferTargetUnavailable   the adapter's check says a transfer's target is down

Context is keyword-only. Messages say what was wrong and what to do, and never carry a
credential or a full phone number.
"""

from __future__ import annotations

from datetime import datetime

import attrs


class CallResilienceError(Exception):
    """The root of every error that callresilience raises on purpose."""


class InvalidInput(CallResilienceError, ValueError):
    """A value given to the library breaks a rule; nothing was changed.

    Args:
        message: What was wrong and what to do.
        field: The name of the offending field or argument.
    """

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class UnsafeQueryValue(InvalidInput):
    """A value would change the structure of a ServiceNow encoded query."""


class RoutingError(CallResilienceError):
    """An event that the routing state does not allow; the state is unchanged."""


class UnknownCall(RoutingError):
    """The call id is not known to the router."""


class UnknownAgent(RoutingError):
    """The agent id is not known to the router."""


class DuplicateCall(RoutingError):
    """A call with this id is already in the router."""


class OfferNotPending(RoutingError):
    """The offer is no longer open: it expired, was withdrawn, or was answered."""


class CallStateError(RoutingError):
    """The call's state does not allow this event."""


class AgentStateError(RoutingError):
    """The agent's status or activity does not allow this event."""


@attrs.frozen
class RateLimit:
    """What ServiceNow's rate-limit headers said.

    ServiceNow documents `X-RateLimit-Limit` (requests per hour), `X-RateLimit-Reset`
    (a UNIX time) and `X-RateLimit-Rule` (the rule's sys_id); there is no "remaining".

    Attributes:
        limit: Requests allowed per hour under the matched rule.
        reset: When the window resets (UTC), if sent.
        rule: The sys_id of the matched `sys_rate_limit_rules` record, if sent.
    """

    limit: int | None = None
    reset: datetime | None = None
    rule: str | None = None


class ServiceNowError(CallResilienceError):
    """An instance answered badly, or not at all.

    Args:
        message: What happened, in words; never contains a credential.
        status_code: The HTTP status, or None when no response arrived.
        sn_message: ServiceNow's `error.message`, when the body had one.
        sn_detail: ServiceNow's `error.detail`, when the body had one.
        transaction_id: The `X-Transaction-ID` response header, when present.
        retry_after: Seconds the instance asked us to wait, when it said so.
        rate_limit: The parsed `X-RateLimit-*` headers, when present.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        sn_message: str | None = None,
        sn_detail: str | None = None,
        transaction_id: str | None = None,
        retry_after: float | None = None,
        rate_limit: RateLimit | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.sn_message = sn_message
        self.sn_detail = sn_detail
        self.transaction_id = transaction_id
        self.retry_after = retry_after
        self.rate_limit = rate_limit


class TransientError(ServiceNowError):
    """Nothing was written; the same request is safe to send again after a pause."""


class RateLimited(TransientError):
    """The instance answered 429; wait `retry_after` seconds before the next request."""


class AmbiguousError(ServiceNowError):
    """The request was sent and its effect is unknown; look the record up before retrying."""


class PermanentError(ServiceNowError):
    """The instance refused the request; retrying the same request will not help."""


class AuthenticationError(ServiceNowError):
    """The instance refused the credentials, even after one re-authentication."""


class ItsmUnavailable(CallResilienceError):
    """The instance cannot create the record now; the journal keeps it for later."""


class InteractionRequired(CallResilienceError):
    """The action needs an Interaction that the call does not have yet."""


class TransferTargetUnavailable(CallResilienceError):
    """The adapter's endpoint check found a transfer's target down; the call stays put."""
