"""Every outcome sorted into the error tree: pure checks, then the same through respx."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from callresilience import (
    AmbiguousError,
    AuthenticationError,
    PermanentError,
    RateLimit,
    RateLimited,
    ServiceNowError,
    TransientError,
)
from callresilience.servicenow import ServiceNowClient
from callresilience.servicenow._classify import (
    Decoded,
    classify_exception,
    classify_response,
    endpoint_failed,
    may_still_run,
    nothing_sent,
)

from .conftest import TABLE_URL, envelope_error

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()
JSON = {"Content-Type": "application/json;charset=UTF-8"}

HIBERNATING = (
    b"<!DOCTYPE html><html><head><title>Instance Hibernating page</title></head>"
    b"<body>Your instance is hibernating. Sign in to wake it up.</body></html>"
)
# stackstate-agent-integrations: cmdb_ci_result_malformed_json_with_error_msg.txt, shortened.
BROKEN_200 = (
    b'{"result":[{"asset":{"name":"apc3276","sys_id":"375924dfdb6fb2882f74f12aaf9619b8"},}""],'
    b'"error":{"detail":"Transaction cancelled: maximum execution time exceeded. Check logs for '
    b'error trace.","message":"Transaction cancelled: maximum execution time exceeded"},'
    b'"status":"failure"}'
)
FAILURE_200 = (
    b'{"result":[],"error":{"message":"Transaction cancelled: maximum execution time exceeded",'
    b'"detail":null},"status":"failure"}'
)


def classify(
    status: int,
    content: bytes = b"",
    *,
    write: bool = False,
    headers: dict[str, str] | None = None,
) -> Decoded | ServiceNowError:
    """Classify a response made of the given parts."""
    return classify_response(
        status_code=status,
        headers=headers if headers is not None else JSON,
        content=content,
        write=write,
        action="GET /api/now/table/incident" if not write else "POST /api/now/table/incident",
        now=NOW,
    )


def test_success_unwraps_the_result_envelope() -> None:
    """A 2xx {"result": ...} body gives the result, X-Total-Count and X-Transaction-ID."""
    outcome = classify(
        200,
        b'{"result":[{"sys_id":"a"}]}',
        headers={**JSON, "X-Total-Count": "42", "X-Transaction-ID": "7d1e4c1f"},
    )
    assert outcome == Decoded([{"sys_id": "a"}], total_count=42, transaction_id="7d1e4c1f")


def test_no_content_is_success_without_result() -> None:
    """A 204 has no body and means success."""
    assert classify(204, write=True) == Decoded(None)


def test_unreadable_total_count_is_none() -> None:
    """An X-Total-Count that is not a number is left out."""
    outcome = classify(200, b'{"result":[]}', headers={**JSON, "X-Total-Count": "many"})
    assert isinstance(outcome, Decoded)
    assert outcome.total_count is None


@pytest.mark.parametrize(
    ("content", "content_type", "words"),
    [
        (HIBERNATING, "text/html;charset=UTF-8", "hibernating"),
        (b"<html><body>Down for maintenance</body></html>", "text/html", "HTML page"),
        (b"  <html>", "application/json", "HTML page"),
        (BROKEN_200, "application/json", "cancelled"),
        (b'{"result":[{"sys_id":"a"', "application/json", "not valid JSON"),
        (b"", "application/json", "not valid JSON"),
        (b"[1, 2]", "application/json", "not a JSON object"),
        (FAILURE_200, "application/json", "reports a failure"),
        (b'{"records":[]}', "application/json", "no 'result'"),
    ],
)
def test_broken_success_is_transient_on_reads_and_ambiguous_on_writes(
    content: bytes, content_type: str, words: str
) -> None:
    """A 200 that is HTML, malformed or says failure: transient on a read, ambiguous on a write."""
    headers = {"Content-Type": content_type}
    read = classify(200, content, headers=headers)
    write = classify(201, content, headers=headers, write=True)
    assert type(read) is TransientError
    assert type(write) is AmbiguousError
    assert words in str(read)
    assert "look the record up" in str(write)


def test_broken_200_keeps_servicenow_words() -> None:
    """The cancelled-transaction text is kept as sn_message, even from a malformed body."""
    outcome = classify(200, BROKEN_200, write=True)
    assert isinstance(outcome, AmbiguousError)
    assert outcome.sn_message == "Transaction cancelled: maximum execution time exceeded"
    failure = classify(200, FAILURE_200)
    assert isinstance(failure, TransientError)
    assert failure.sn_message == "Transaction cancelled: maximum execution time exceeded"
    assert failure.sn_detail is None


# (status, body, class on a read, class on a write)
STATUS_TABLE: list[tuple[int, dict[str, Any] | None, type[ServiceNowError], type[ServiceNowError]]]
STATUS_TABLE = [
    (400, envelope_error("Invalid table x", "Table x does not exist"),
     PermanentError, PermanentError),
    (401, envelope_error("User Not Authenticated", "Required to provide Auth information"),
     AuthenticationError, AuthenticationError),
    (403, envelope_error("Operation Failed", "ACL Exception Update Failed due to security "
                         "constraints"), PermanentError, PermanentError),
    (404, envelope_error("No Record found", "Record doesn't exist or ACL restricts the record "
                         "retrieval"), PermanentError, PermanentError),
    (405, envelope_error("Method not Supported", None), PermanentError, PermanentError),
    (406, None, PermanentError, PermanentError),
    (408, None, TransientError, TransientError),
    (409, envelope_error("Conflict", " "), PermanentError, PermanentError),
    (415, envelope_error("Unsupported Media Type", ""), PermanentError, PermanentError),
    (422, None, PermanentError, PermanentError),
    (429, envelope_error("Rate limit exceeded", "Rate limit of 100 requests per hour for Table "
                         "API exceeded"), RateLimited, RateLimited),
    (500, envelope_error("Transaction cancelled: maximum execution time exceeded", None),
     TransientError, AmbiguousError),
    (500, None, TransientError, AmbiguousError),
    (501, None, TransientError, AmbiguousError),
    (502, None, TransientError, AmbiguousError),
    (503, envelope_error("Service Unavailable", None), TransientError, AmbiguousError),
    (504, None, TransientError, AmbiguousError),
    (302, None, PermanentError, PermanentError),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "on_read", "on_write"), STATUS_TABLE)
def test_status_codes_are_classified(
    status: int,
    body: dict[str, Any] | None,
    on_read: type[ServiceNowError],
    on_write: type[ServiceNowError],
) -> None:
    """Each status maps to its class, by whether the request was a read or a write."""
    content = httpx.Response(200, json=body).content if body is not None else b""
    read = classify(status, content)
    write = classify(status, content, write=True)
    assert type(read) is on_read
    assert type(write) is on_write
    assert isinstance(read, ServiceNowError)
    assert read.status_code == status
    if body is not None:
        assert read.sn_message == body["error"]["message"]
        detail = body["error"]["detail"]
        assert read.sn_detail == (detail.strip() or None if detail else None)


def test_errors_carry_transaction_retry_after_and_rate_limit() -> None:
    """A 429 carries X-Transaction-ID, Retry-After and the X-RateLimit-* values."""
    headers = {
        **JSON,
        "X-Transaction-ID": "b1c2d3",
        "Retry-After": "37",
        "X-RateLimit-Limit": "100",
        "X-RateLimit-Reset": "1772366400",
        "X-RateLimit-Rule": "8a9c2e4f1b2c3d4e5f60718293a4b5c6",
    }
    outcome = classify(429, b"{}", headers=headers)
    assert isinstance(outcome, RateLimited)
    assert outcome.transaction_id == "b1c2d3"
    assert outcome.retry_after == 37.0
    assert outcome.rate_limit == RateLimit(
        limit=100,
        reset=datetime(2026, 3, 1, 12, tzinfo=UTC),
        rule="8a9c2e4f1b2c3d4e5f60718293a4b5c6",
    )
    assert "wait 37 s" in str(outcome)


def test_retry_after_as_a_date_uses_now() -> None:
    """A Retry-After date is turned into seconds from the `now` passed in."""
    headers = {**JSON, "Retry-After": "Sun, 01 Mar 2026 12:02:00 GMT"}
    outcome = classify(503, b"", headers=headers)
    assert isinstance(outcome, TransientError)
    assert outcome.retry_after == 120.0


def test_messages_mask_phone_numbers_from_servicenow() -> None:
    """A phone number quoted in ServiceNow's error text is masked in the message."""
    body = httpx.Response(200, json=envelope_error("Duplicate caller +14155550100", None)).content
    outcome = classify(400, body)
    assert "+14155550100" not in str(outcome)
    assert "+14*******00" in str(outcome)


def test_oauth_style_error_body_is_read() -> None:
    """An OAuth error body ({"error": "...", "error_description": ...}) gives the words."""
    outcome = classify(400, b'{"error":"invalid_request","error_description":"bad grant"}')
    assert isinstance(outcome, PermanentError)
    assert (outcome.sn_message, outcome.sn_detail) == ("invalid_request", "bad grant")


def test_non_json_error_body_has_no_servicenow_words() -> None:
    """An HTML 503 page from a load balancer still classifies, without sn_message."""
    outcome = classify(503, b"<html>busy</html>", headers={"Content-Type": "text/html"})
    assert isinstance(outcome, TransientError)
    assert outcome.sn_message is None


def _exc(cls: type[httpx.RequestError], message: str = "boom") -> httpx.RequestError:
    return cls(message, request=httpx.Request("POST", "https://example.service-now.com/x"))


# (exception class, class on a read, class on a write, nothing sent, endpoint failed)
EXCEPTION_TABLE: list[
    tuple[type[httpx.RequestError], type[ServiceNowError], type[ServiceNowError], bool, bool]
]
EXCEPTION_TABLE = [
    (httpx.ConnectError, TransientError, TransientError, True, True),
    (httpx.ConnectTimeout, TransientError, TransientError, True, True),
    (httpx.PoolTimeout, TransientError, TransientError, True, False),
    (httpx.ProxyError, TransientError, TransientError, True, False),
    (httpx.ReadTimeout, TransientError, AmbiguousError, False, True),
    (httpx.WriteTimeout, TransientError, AmbiguousError, False, True),
    (httpx.TimeoutException, TransientError, AmbiguousError, False, True),
    (httpx.ReadError, TransientError, AmbiguousError, False, False),
    (httpx.WriteError, TransientError, AmbiguousError, False, False),
    (httpx.CloseError, TransientError, AmbiguousError, False, False),
    (httpx.NetworkError, TransientError, AmbiguousError, False, False),
    (httpx.RemoteProtocolError, TransientError, AmbiguousError, False, False),
    (httpx.ProtocolError, TransientError, AmbiguousError, False, False),
    (httpx.DecodingError, TransientError, AmbiguousError, False, False),
    (httpx.TransportError, TransientError, AmbiguousError, False, False),
    (httpx.RequestError, TransientError, AmbiguousError, False, False),
    (httpx.LocalProtocolError, PermanentError, PermanentError, False, False),
    (httpx.UnsupportedProtocol, PermanentError, PermanentError, False, False),
    (httpx.TooManyRedirects, PermanentError, PermanentError, False, False),
]  # fmt: skip


@pytest.mark.parametrize(("cls", "on_read", "on_write", "unsent", "failover"), EXCEPTION_TABLE)
def test_exceptions_are_classified(
    cls: type[httpx.RequestError],
    on_read: type[ServiceNowError],
    on_write: type[ServiceNowError],
    unsent: bool,
    failover: bool,
) -> None:
    """Each httpx exception maps to its class, and says whether anything was sent."""
    exc = _exc(cls)
    read = classify_exception(exc, write=False, action="GET /api/now/table/x")
    write = classify_exception(exc, write=True, action="POST /api/now/table/x")
    assert type(read) is on_read
    assert type(write) is on_write
    assert read.status_code is None
    assert cls.__name__ in str(read)
    assert nothing_sent(exc) is unsent
    assert endpoint_failed(exc) is failover


def test_certificate_failure_is_permanent() -> None:
    """A TLS verification failure is a set-up problem, reported as such."""
    exc = _exc(httpx.ConnectError, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    exc.__cause__ = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error = classify_exception(exc, write=True, action="POST /x")
    assert type(error) is PermanentError
    assert "verify=" in str(error)


def test_long_exception_text_is_shortened() -> None:
    """An exception's text is cut so one message stays one readable line."""
    error = classify_exception(_exc(httpx.ReadError, "x" * 500), write=False, action="GET /x")
    assert len(str(error)) < 400


@pytest.mark.parametrize(
    ("status", "still_running"),
    [(None, True), (502, True), (504, True), (500, False), (503, False)],
)
def test_may_still_run(status: int | None, still_running: bool) -> None:
    """Only an answer from the instance itself proves its transaction has ended."""
    assert may_still_run(AmbiguousError("x", status_code=status)) is still_running


# The same table again, through a real client and respx, for reads and writes.


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "body", "on_read", "on_write"), STATUS_TABLE)
async def test_statuses_through_the_client(
    *,
    router: respx.MockRouter,
    make_client: Callable[..., ServiceNowClient],
    status: int,
    body: dict[str, Any] | None,
    on_read: type[ServiceNowError],
    on_write: type[ServiceNowError],
) -> None:
    """Through respx, each status raises its class on get() and create()."""
    router.get(url__startswith=TABLE_URL).respond(status, json=body)
    router.post(TABLE_URL).respond(status, json=body)
    async with make_client() as client:
        with pytest.raises(on_read) as read:
            await client.get("sn_openframe_phone_log", "a" * 32)
        with pytest.raises(on_write) as write:
            await client.create("sn_openframe_phone_log", {"call_id": "c-1"})
    assert type(read.value) is on_read
    assert type(write.value) is on_write
    assert read.value.status_code == status


@pytest.mark.anyio
@pytest.mark.parametrize(("cls", "on_read", "on_write", "unsent", "failover"), EXCEPTION_TABLE)
async def test_exceptions_through_the_client(
    *,
    router: respx.MockRouter,
    make_client: Callable[..., ServiceNowClient],
    cls: type[httpx.RequestError],
    on_read: type[ServiceNowError],
    on_write: type[ServiceNowError],
    unsent: bool,
    failover: bool,
) -> None:
    """Through respx, each httpx exception raises its class, chained to the original."""
    router.get(url__startswith=TABLE_URL).mock(side_effect=cls)
    router.post(TABLE_URL).mock(side_effect=cls)
    async with make_client() as client:
        with pytest.raises(on_read) as read:
            await client.get("sn_openframe_phone_log", "a" * 32)
        with pytest.raises(on_write) as write:
            await client.create("sn_openframe_phone_log", {"call_id": "c-1"})
    assert type(read.value) is on_read
    assert type(write.value) is on_write
    assert isinstance(write.value.__cause__, cls)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (HIBERNATING, "text/html"),
        (BROKEN_200, "application/json"),
        (FAILURE_200, "application/json"),
    ],
)
async def test_broken_200_through_the_client(
    router: respx.MockRouter,
    make_client: Callable[..., ServiceNowClient],
    content: bytes,
    content_type: str,
) -> None:
    """Through respx, a broken 200 is transient for query() and ambiguous for update()."""
    response = httpx.Response(200, content=content, headers={"Content-Type": content_type})
    router.get(url__startswith=TABLE_URL).mock(return_value=response)
    router.patch(url__startswith=TABLE_URL).mock(return_value=response)
    async with make_client() as client:
        with pytest.raises(TransientError) as read:
            await client.query("sn_openframe_phone_log")
        with pytest.raises(AmbiguousError):
            await client.update("sn_openframe_phone_log", "a" * 32, {"end_time": "x"})
    assert type(read.value) is TransientError


def test_numbers_without_a_plus_are_masked_but_ids_are_not() -> None:
    """A bare run of digits is masked too; digits inside a sys_id or record number stay."""
    sys_id = "1234567890abcdef1234567890abcdef"
    text = f"Duplicate caller 14155550100 on IMS0001234567, record {sys_id}"
    body = httpx.Response(200, json=envelope_error(text, None)).content
    message = str(classify(400, body))
    assert "14155550100" not in message
    assert "141******00" in message
    assert "IMS0001234567" in message
    assert sys_id in message
