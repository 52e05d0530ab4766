"""Sorting every outcome of a request into the error tree, without I/O.

The question each rule answers is "may the request have changed anything?":

- **Transient**: nothing was written (it never left, the instance refused it before running
  it, or it was a read), so the same request may be sent again after a pause.
- **Ambiguous**: a write was sent and its effect is unknown (no answer, a broken connection,
  a 5xx, a 2xx whose body is broken). Look the record up before sending it again.
- **Permanent**: the instance understood and refused; sending it again will not help.
- **Authentication**: 401 (the client re-authenticates once before raising it).

A read (GET) has no effect, so what would be ambiguous for a write is transient for a read.
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Mapping
from typing import Any, Final

import attrs
import httpx

from .._errors import (
    AmbiguousError,
    AuthenticationError,
    PermanentError,
    RateLimit,
    RateLimited,
    ServiceNowError,
    TransientError,
)
from .._model import mask_phone
from ._headers import parse_rate_limit, parse_retry_after, whole_number

__all__ = [
    "Decoded",
    "classify_exception",
    "classify_response",
    "classify_status",
    "endpoint_failed",
    "is_write",
    "may_still_run",
    "nothing_sent",
]

_WRITE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CANCELLED: Final = "maximum execution time exceeded"
# A phone number an instance may echo in an error, with or without its '+' (a run of digits
# inside a word, such as a sys_id or a record number, is not one).
_E164_RE: Final = re.compile(r"(?<![0-9A-Za-z])\+?[0-9]{7,15}(?![0-9A-Za-z])")

_TRANSIENT_HINT: Final = "nothing was written; send it again after a pause"
_AMBIGUOUS_HINT: Final = (
    "the write may or may not have been committed; look the record up by its correlation "
    "field before sending it again"
)
_PERMANENT_HINT: Final = "sending it again will not help; fix the request or the instance's set-up"


@attrs.frozen
class Decoded:
    """A successful answer, unwrapped from its ``{"result": ...}`` envelope.

    Attributes:
        result: The envelope's ``result``: a record, a list of records, or None for 204.
        total_count: The `X-Total-Count` header, when sent (list reads).
        transaction_id: The `X-Transaction-ID` header, when sent.
        rate_limit: The parsed `X-RateLimit-*` headers, when sent.
    """

    result: Any
    total_count: int | None = None
    transaction_id: str | None = None
    rate_limit: RateLimit | None = None


def is_write(method: str) -> bool:
    """Return whether a request with this method may change a record."""
    return method.upper() in _WRITE_METHODS


def nothing_sent(exc: httpx.RequestError) -> bool:
    """Return whether the request failed before any byte of it reached the instance."""
    return isinstance(
        exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout | httpx.ProxyError
    )


def endpoint_failed(exc: httpx.RequestError) -> bool:
    """Return whether the failure says the endpoint, not our side, is in trouble.

    A connect failure or any timeout counts; a pool timeout does not, since it only means our
    own connection pool was full.
    """
    if isinstance(exc, httpx.PoolTimeout):
        return False
    return isinstance(exc, httpx.ConnectError | httpx.TimeoutException)


def may_still_run(error: ServiceNowError) -> bool:
    """Return whether an ambiguous write may still be running on the instance.

    When no answer came (a timeout, a broken connection) or a gateway gave up waiting (502,
    504), the instance may still be inserting the record, so a lookup made now can miss it.
    When the instance itself answered (500, 503, a broken 2xx), its transaction has ended and a
    lookup is authoritative.
    """
    return error.status_code is None or error.status_code in (502, 504)


def _mask(text: str) -> str:
    return _E164_RE.sub(lambda match: mask_phone(match.group()), text)


def _clean(value: object) -> str | None:
    # ServiceNow sends `detail` as null, "" or " " when it has nothing to say.
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _cert_failure(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    if len(text) > 200:
        text = text[:197] + "..."
    name = type(exc).__name__
    return f"{name}: {_mask(text)}" if text else name


def classify_exception(exc: httpx.RequestError, *, write: bool, action: str) -> ServiceNowError:
    """Return the error that an httpx failure of this request stands for.

    Args:
        exc: What the transport raised.
        write: Whether the request may change a record (see `is_write`).
        action: ``"METHOD /path"`` for the message; never a query string or a full URL.

    Returns:
        A `TransientError` when nothing can have been written, an `AmbiguousError` when a
        write was sent without a usable answer, a `PermanentError` when the request cannot
        be sent as it is.
    """
    cause = _describe(exc)
    if isinstance(exc, httpx.PoolTimeout):
        return TransientError(
            f"{action}: no free connection in the pool within the pool timeout ({cause}); "
            f"{_TRANSIENT_HINT}, or allow more connections",
        )
    if isinstance(exc, httpx.ConnectTimeout):
        return TransientError(
            f"{action}: could not connect within the connect timeout ({cause}); {_TRANSIENT_HINT}"
        )
    if isinstance(exc, httpx.ConnectError):
        if _cert_failure(exc):
            return PermanentError(
                f"{action}: the instance's TLS certificate did not verify ({cause}); nothing "
                "was sent. Fix the trust store, or pass verify= an ssl.SSLContext that trusts "
                "the instance's certificate authority",
            )
        return TransientError(f"{action}: could not connect ({cause}); {_TRANSIENT_HINT}")
    if isinstance(exc, httpx.ProxyError):
        return TransientError(f"{action}: the proxy failed ({cause}); {_TRANSIENT_HINT}")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError):
        return PermanentError(
            f"{action}: the request could not be sent as HTTP ({cause}); check the base URL, "
            "the headers and the payload",
        )
    if isinstance(exc, httpx.TooManyRedirects):
        return PermanentError(
            f"{action}: too many redirects ({cause}); check the base URL points at the instance"
        )
    if isinstance(exc, httpx.TimeoutException):
        what = f"no answer within the timeout after the request was sent ({cause})"
    elif isinstance(exc, httpx.RemoteProtocolError):
        what = f"the connection broke or the answer was not valid HTTP ({cause})"
    elif isinstance(exc, httpx.DecodingError):
        what = f"the answer's body could not be decoded ({cause})"
    else:
        what = f"the connection failed after the request was sent ({cause})"
    if write:
        return AmbiguousError(f"{action}: {what}; {_AMBIGUOUS_HINT}")
    return TransientError(f"{action}: {what}; the read changed nothing, send it again")


def _envelope_error(body: object) -> tuple[str | None, str | None]:
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            return _clean(error.get("message")), _clean(error.get("detail"))
        if isinstance(error, str):
            return _clean(error), _clean(body.get("error_description"))
    return None, None


def _sn_words(sn_message: str | None, sn_detail: str | None) -> str:
    words = ": ".join(part for part in (sn_message, sn_detail) if part)
    return f" ({_mask(words)})" if words else ""


def _broken_body(content: bytes, content_type: str) -> tuple[str, object]:
    """Return why a 2xx body is unusable ("" when it is fine) and the decoded body."""
    text = content.decode("utf-8", errors="replace")
    stripped = text.lstrip()
    if "html" in content_type.lower() or stripped[:1] == "<":
        if "hibernat" in text.lower():
            return (
                "the instance is hibernating (it sent its HTML 'Instance Hibernating' page)",
                None,
            )
        return "an HTML page came where JSON was expected (a maintenance or login page?)", None
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's stack
        if _CANCELLED in text.lower():
            return "the transaction was cancelled and the body is broken", None
        return "the body is not valid JSON (it may have been cut short)", None
    if not isinstance(body, dict):
        return "the body is not a JSON object", body
    if body.get("status") == "failure" or "error" in body:
        return "the body reports a failure", body
    if "result" not in body:
        return "the body has no 'result'", body
    return "", body


def _context(headers: httpx.Headers, status_code: int, now: float) -> dict[str, Any]:
    return {
        "status_code": status_code,
        "transaction_id": _clean(headers.get("x-transaction-id")),
        "retry_after": parse_retry_after(headers.get("retry-after"), now=now),
        "rate_limit": parse_rate_limit(headers),
    }


def _answered(status_code: int) -> str:
    reason = httpx.codes.get_reason_phrase(status_code)
    return f"the instance answered {status_code} {reason}".rstrip()


def classify_response(
    *,
    status_code: int,
    headers: Mapping[str, str],
    content: bytes,
    write: bool,
    action: str,
    now: float,
) -> Decoded | ServiceNowError:
    """Return the unwrapped result of a response, or the error it stands for.

    Args:
        status_code: The HTTP status.
        headers: The response headers (`httpx.Headers`, or any mapping; read case-insensitively).
        content: The response body.
        write: Whether the request may change a record (see `is_write`).
        action: ``"METHOD /path"`` for the message; never a query string or a full URL.
        now: The current UNIX time, for a `Retry-After` given as a date.

    Returns:
        `Decoded` for a 2xx with a usable ``{"result": ...}`` body (or a 204), otherwise the
        classified error, carrying the status, ServiceNow's `error.message` and
        `error.detail`, `X-Transaction-ID`, `Retry-After` and the rate-limit headers.
    """
    headers = httpx.Headers(headers)
    if not 200 <= status_code < 300:
        return classify_status(
            status_code=status_code,
            headers=headers,
            content=content,
            write=write,
            action=action,
            now=now,
        )
    context = _context(headers, status_code, now)
    if status_code == 204:
        return Decoded(
            None, transaction_id=context["transaction_id"], rate_limit=context["rate_limit"]
        )
    problem, body = _broken_body(content, headers.get("content-type", ""))
    if not problem and isinstance(body, dict):
        return Decoded(
            body["result"],
            total_count=whole_number(headers.get("x-total-count")),
            transaction_id=context["transaction_id"],
            rate_limit=context["rate_limit"],
        )
    sn_message, sn_detail = _envelope_error(body)
    if sn_message is None and _CANCELLED in content.decode("utf-8", "replace").lower():
        sn_message = "Transaction cancelled: maximum execution time exceeded"
    words = _sn_words(sn_message, sn_detail)
    what = f"{action}: {_answered(status_code)} but {problem}{words}"
    if write:
        return AmbiguousError(
            f"{what}; {_AMBIGUOUS_HINT}", sn_message=sn_message, sn_detail=sn_detail, **context
        )
    return TransientError(
        f"{what}; the read changed nothing, send it again after a pause",
        sn_message=sn_message,
        sn_detail=sn_detail,
        **context,
    )


def record_of(
    decoded: Decoded, action: str, *, write: bool, status_code: int | None = None
) -> dict[str, Any] | ServiceNowError:
    """The record a successful answer carries, or the error when its `result` is not one.

    Args:
        decoded: The unwrapped answer.
        action: ``"METHOD /path"`` for the message.
        write: Whether the request may have changed a record (then the error is ambiguous).
        status_code: The status to put on the error, when the caller has it.
    """
    if isinstance(decoded.result, dict):
        return decoded.result
    what = f"{action}: the instance answered but 'result' is not a record"
    if write:
        return AmbiguousError(
            f"{what}; the write may or may not have been committed, look the record up "
            "before sending it again",
            status_code=status_code,
            transaction_id=decoded.transaction_id,
        )
    return TransientError(
        f"{what}; the read changed nothing, send it again after a pause",
        status_code=status_code,
        transaction_id=decoded.transaction_id,
    )


def classify_status(
    *,
    status_code: int,
    headers: Mapping[str, str],
    content: bytes,
    write: bool,
    action: str,
    now: float,
) -> ServiceNowError:
    """Return the error that a response with a status other than 2xx stands for.

    Takes the same arguments as `classify_response`.
    """
    headers = httpx.Headers(headers)
    context = _context(headers, status_code, now)
    try:
        body = json.loads(content) if content else None
    except (ValueError, RecursionError):
        body = None
    sn_message, sn_detail = _envelope_error(body)
    words = _sn_words(sn_message, sn_detail)
    context.update(sn_message=sn_message, sn_detail=sn_detail)
    answered = _answered(status_code)

    if status_code == 401:
        return AuthenticationError(
            f"{action}: {answered}{words}; check the credentials and that the integration "
            "user is active and allowed to use the REST API",
            **context,
        )
    if status_code == 429:
        after = context["retry_after"]
        wait = f"wait {after:g} s" if after is not None else "wait"
        return RateLimited(
            f"{action}: {answered}{words}; the instance refused it before running it, "
            f"{wait} before the next request",
            **context,
        )
    if status_code == 408:
        return TransientError(f"{action}: {answered}{words}; {_TRANSIENT_HINT}", **context)
    if 500 <= status_code < 600:
        if write:
            return AmbiguousError(f"{action}: {answered}{words}; {_AMBIGUOUS_HINT}", **context)
        return TransientError(
            f"{action}: {answered}{words}; the read changed nothing, send it again after a pause",
            **context,
        )
    if 300 <= status_code < 400:
        return PermanentError(
            f"{action}: {answered}, a redirect; check that the base URL is the instance's own "
            "https address",
            **context,
        )
    return PermanentError(f"{action}: {answered}{words}; {_PERMANENT_HINT}", **context)
