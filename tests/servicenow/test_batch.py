"""ServiceNowClient.batch and BatchRequest: the Batch API request, each item's outcome, failures."""

from __future__ import annotations

import base64
import json
import logging
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from callresilience import (
    AmbiguousError,
    AuthenticationError,
    InvalidInput,
    PermanentError,
    RateLimit,
    RateLimited,
    ServiceNowError,
    TransientError,
    UnsafeQueryValue,
)
from callresilience.servicenow import BatchRequest, OAuth2ClientCredentials, ServiceNowClient

from .conftest import BASE, PASSWORD, envelope_error

TABLE = "sn_openframe_phone_log"
BATCH_URL = f"{BASE}/api/now/v1/batch"
SYS_ID = "9d385017c611228701d22104cc95c371"
OTHER_ID = "5137153cc611227c000bbd1bd8cd2005"
PHONE = "+14155550100"
PHONE_DIGITS = "4155550100"
SECRET = "client-secret-never-shown"
CALL = ("call_id", "0f8e9c1a-3b2d-4c5e-8f70-112233445566")
RATE_HEADERS = {
    "X-RateLimit-Limit": "100",
    "X-RateLimit-Reset": "1767229200",
    "X-RateLimit-Rule": "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
}
RATE_LIMIT = RateLimit(
    limit=100,
    reset=datetime(2026, 1, 1, 1, tzinfo=UTC),
    rule="0a1b2c3d4e5f60718293a4b5c6d7e8f9",
)


def record(number: int) -> dict[str, Any]:
    """A record as the instance returns it, told apart by `number`."""
    return {"sys_id": f"{number:032x}", "call_id": f"c-{number}"}


def served(
    item_id: str,
    status: int,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One `serviced_requests` item: `body` as JSON, or `raw` bytes, base64-encoded."""
    if raw is None:
        raw = b"" if body is None else json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return {
        "id": item_id,
        "status_code": status,
        "status_text": httpx.codes.get_reason_phrase(status),
        "headers": [{"name": name, "value": value} for name, value in all_headers.items()],
        "body": base64.b64encode(raw).decode("ascii"),
        "execution_time": 12,
    }


def batch_answer(
    *serviced: Mapping[str, Any],
    unserviced: tuple[str, ...] = (),
    headers: Mapping[str, str] | None = None,
) -> Callable[[httpx.Request], httpx.Response]:
    """Answer a batch with these items, echoing its batch_request_id."""

    def answer(request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)
        return httpx.Response(
            200,
            json={
                "batch_request_id": sent["batch_request_id"],
                "serviced_requests": list(serviced),
                "unserviced_requests": list(unserviced),
            },
            headers=headers,
        )

    return answer


def sent_body(route: respx.Route, call: int = -1) -> dict[str, Any]:
    """The JSON body of one batch the route received."""
    body: dict[str, Any] = json.loads(route.calls[call].request.content)
    return body


def header_pairs(pairs: list[dict[str, str]]) -> dict[str, str]:
    """A sub-request's headers as a dict with lowercase names."""
    return {pair["name"].lower(): pair["value"] for pair in pairs}


def token_body(token: str) -> dict[str, Any]:
    """A ServiceNow /oauth_token.do answer."""
    return {"access_token": token, "token_type": "Bearer", "expires_in": 1800}


# The request sent.


@pytest.mark.anyio
async def test_batch_posts_one_rest_request_per_request(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """One POST to /api/now/v1/batch carries each request: id, method, url, headers, body."""
    first = {"call_id": "c-1", "phone_number": PHONE}
    second = {"call_id": "c-2", "duration": 42, "tags": ["a", "b"], "done": None}
    change = {"state": "closed", "nested": {"x": 1.5}}
    route = router.post(BATCH_URL).mock(
        side_effect=batch_answer(
            served("0", 201, {"result": record(0)}),
            served("1", 201, {"result": record(1)}),
            served("2", 200, {"result": record(2)}),
        )
    )
    requests = [
        BatchRequest.create(TABLE, first),
        BatchRequest.create("incident", second),
        BatchRequest.update(TABLE, SYS_ID, change),
    ]
    async with make_client() as client:
        outcomes = await client.batch(requests)
    assert outcomes == [record(0), record(1), record(2)]
    assert route.call_count == 1
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.url.path == "/api/now/v1/batch"
    expected_auth = base64.b64encode(f"integration:{PASSWORD}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected_auth}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    body = sent_body(route)
    assert isinstance(body["batch_request_id"], str)
    assert body["batch_request_id"]
    items = body["rest_requests"]
    assert [item["id"] for item in items] == ["0", "1", "2"]
    assert [item["method"] for item in items] == ["POST", "POST", "PATCH"]
    assert [item["url"] for item in items] == [
        f"/api/now/table/{TABLE}",
        "/api/now/table/incident",
        f"/api/now/table/{TABLE}/{SYS_ID}",
    ]
    for item in items:
        headers = header_pairs(item["headers"])
        assert headers["accept"] == "application/json"
        assert headers["content-type"] == "application/json"
        # The sub-answers' headers (Retry-After, X-Transaction-ID) are needed to classify them.
        assert item["exclude_response_headers"] is False
    decoded = [json.loads(base64.b64decode(item["body"], validate=True)) for item in items]
    assert decoded == [first, second, change]


@pytest.mark.anyio
async def test_each_batch_has_its_own_id(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """Two batches carry two different batch_request_ids."""
    route = router.post(BATCH_URL).mock(
        side_effect=batch_answer(served("0", 201, {"result": record(0)}))
    )
    async with make_client() as client:
        await client.batch([BatchRequest.create(TABLE, {"call_id": "c-1"})])
        await client.batch([BatchRequest.create(TABLE, {"call_id": "c-1"})])
    assert sent_body(route, 0)["batch_request_id"] != sent_body(route, 1)["batch_request_id"]


@pytest.mark.anyio
@pytest.mark.parametrize("exclude", [True, False])
async def test_exclude_reference_link_reaches_every_sub_url(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient], exclude: bool
) -> None:
    """With exclude_reference_link, each sub-request's url asks for bare sys_ids."""
    route = router.post(BATCH_URL).mock(
        side_effect=batch_answer(
            served("0", 201, {"result": record(0)}), served("1", 200, {"result": record(1)})
        )
    )
    requests = [
        BatchRequest.create(TABLE, {"call_id": "c-1"}),
        BatchRequest.update(TABLE, SYS_ID, {"state": "closed"}),
    ]
    async with make_client(exclude_reference_link=exclude) as client:
        await client.batch(requests)
    urls = [item["url"] for item in sent_body(route)["rest_requests"]]
    paths = [f"/api/now/table/{TABLE}", f"/api/now/table/{TABLE}/{SYS_ID}"]
    if exclude:
        assert urls == [path + "?sysparm_exclude_reference_link=true" for path in paths]
    else:
        assert urls == paths


@pytest.mark.anyio
@pytest.mark.parametrize("exclude", [True, False])
async def test_fields_reach_every_sub_url(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient], exclude: bool
) -> None:
    """fields= asks the instance for those fields of each record, beside the reference flag."""
    route = router.post(BATCH_URL).mock(
        side_effect=batch_answer(
            served("0", 201, {"result": {"sys_id": SYS_ID}}),
            served("1", 200, {"result": {"sys_id": OTHER_ID}}),
        )
    )
    requests = [
        BatchRequest.create(TABLE, {"call_id": "c-1"}),
        BatchRequest.update(TABLE, OTHER_ID, {"state": "closed"}),
    ]
    async with make_client(exclude_reference_link=exclude) as client:
        outcomes = await client.batch(requests, fields=("sys_id", "number"))
    assert outcomes == [{"sys_id": SYS_ID}, {"sys_id": OTHER_ID}]
    query = "?sysparm_fields=sys_id,number"
    if exclude:
        query += "&sysparm_exclude_reference_link=true"
    urls = [item["url"] for item in sent_body(route)["rest_requests"]]
    assert urls == [f"/api/now/table/{TABLE}{query}", f"/api/now/table/{TABLE}/{OTHER_ID}{query}"]


@pytest.mark.anyio
@pytest.mark.parametrize("fields", [("sys_id", "a&sysparm_query=x"), ("sys id",), 7])
async def test_bad_field_names_are_refused_before_sending(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient], fields: Any
) -> None:
    """A field name that could change the URL is refused; nothing is sent."""
    route = router.post(BATCH_URL).mock(return_value=httpx.Response(500))
    async with make_client() as client:
        with pytest.raises(InvalidInput) as caught:
            await client.batch([BatchRequest.create(TABLE, {"call_id": "c-1"})], fields=fields)
    assert caught.value.field == "fields"
    assert not route.called


# BatchRequest: what it accepts.


def test_create_with_correlation_adds_the_missing_field() -> None:
    """The correlation field is added to a copy of the payload; the caller's dict is unchanged."""
    payload = {"phone_number": PHONE}
    request = BatchRequest.create(TABLE, payload, correlation=CALL)
    assert request.method == "POST"
    assert request.sys_id is None
    assert json.loads(request.body) == {"phone_number": PHONE, "call_id": CALL[1]}
    assert payload == {"phone_number": PHONE}


def test_create_with_correlation_keeps_an_equal_value() -> None:
    """A payload that already holds the same correlation value is taken as it is."""
    request = BatchRequest.create(TABLE, {"call_id": CALL[1]}, correlation=CALL)
    assert json.loads(request.body) == {"call_id": CALL[1]}


def test_create_with_correlation_refuses_a_different_value() -> None:
    """A payload whose correlation field differs from the correlation value is refused."""
    with pytest.raises(InvalidInput, match="differs"):
        BatchRequest.create(TABLE, {"call_id": "another"}, correlation=CALL)


@pytest.mark.parametrize(
    ("correlation", "error"),
    [
        (("call_id", "x^ORsys_id!=0"), UnsafeQueryValue),
        (("call_id", "a\nb"), UnsafeQueryValue),
        (("call_id", ""), InvalidInput),
        (("call_id",), InvalidInput),
        (("call_id", 5), InvalidInput),
        ("call_id", InvalidInput),
    ],
)
def test_create_refuses_unusable_correlations(correlation: Any, error: type[Exception]) -> None:
    """An unsafe, empty or malformed correlation is refused before anything is built."""
    with pytest.raises(error):
        BatchRequest.create(TABLE, {}, correlation=correlation)


@pytest.mark.parametrize(
    "sys_id",
    ["", "abc", SYS_ID.upper(), SYS_ID + "0", f"{SYS_ID[:-1]}/", "../sys_user/x", None, 5],
)
def test_update_refuses_a_bad_sys_id(sys_id: Any) -> None:
    """update() takes only a 32-character lowercase hex sys_id."""
    with pytest.raises(InvalidInput):
        BatchRequest.update(TABLE, sys_id, {"state": "closed"})


@pytest.mark.parametrize("table", ["", "Incident", "sys user", "incident/x", "../x", "a?b", None])
def test_bad_table_names_are_refused(table: Any) -> None:
    """A table name must be lowercase letters, digits and '_' for creates and updates."""
    with pytest.raises(InvalidInput):
        BatchRequest.create(table, {"call_id": "c-1"})
    with pytest.raises(InvalidInput):
        BatchRequest.update(table, SYS_ID, {"state": "closed"})


@pytest.mark.parametrize(
    "payload",
    [
        {"duration": math.nan},
        {"duration": math.inf},
        {"tags": {"a", "b"}},
        {"when": datetime(2026, 1, 1, tzinfo=UTC)},
        {"Phone": PHONE},
        {"phone number": PHONE},
        {1: "x"},
        ["call_id"],
        None,
    ],
)
def test_non_json_payloads_are_refused(payload: Any) -> None:
    """Payloads that are not JSON objects of field names are refused, for both kinds."""
    with pytest.raises(InvalidInput):
        BatchRequest.create(TABLE, payload)
    with pytest.raises(InvalidInput):
        BatchRequest.update(TABLE, SYS_ID, payload)


def test_a_payload_that_contains_itself_is_refused() -> None:
    """A payload that refers to itself cannot be sent: refused for both kinds."""
    payload: dict[str, object] = {"state": "new"}
    payload["nested"] = [payload]
    with pytest.raises(InvalidInput):
        BatchRequest.create(TABLE, payload)
    with pytest.raises(InvalidInput):
        BatchRequest.update(TABLE, SYS_ID, payload)


@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT", "post", "patch", ""])
def test_direct_construction_refuses_other_methods(method: str) -> None:
    """Only POST and PATCH can be batched."""
    with pytest.raises(InvalidInput):
        BatchRequest(method, TABLE, {"call_id": "c-1"})  # type: ignore[arg-type]


def test_direct_construction_pairs_sys_id_with_method() -> None:
    """A POST takes no sys_id; a PATCH needs one."""
    with pytest.raises(InvalidInput):
        BatchRequest("POST", TABLE, {"call_id": "c-1"}, SYS_ID)
    with pytest.raises(InvalidInput):
        BatchRequest("PATCH", TABLE, {"state": "closed"})
    assert BatchRequest("PATCH", TABLE, {}, SYS_ID).path == f"/api/now/table/{TABLE}/{SYS_ID}"


@pytest.mark.parametrize("sys_id", ["", "../sys_user/x", f"{SYS_ID}?sysparm_fields=x"])
def test_direct_construction_checks_the_sys_id(sys_id: str) -> None:
    """A sys_id given to the constructor is checked as update() checks it."""
    with pytest.raises(InvalidInput):
        BatchRequest("PATCH", TABLE, {"state": "closed"}, sys_id)


def test_repr_shows_no_body() -> None:
    """The repr names the method and table but not the encoded body."""
    request = BatchRequest.create(TABLE, {"call_id": "c-1"})
    text = repr(request)
    assert "POST" in text
    assert TABLE in text
    assert "body=" not in text
    assert request.body.decode() not in text
    assert base64.b64encode(request.body).decode() not in text


def test_repr_shows_no_payload_value() -> None:
    """No value from the payload, such as a phone number, appears in the repr."""
    request = BatchRequest.create(TABLE, {"phone_number": PHONE})
    assert PHONE_DIGITS not in repr(request)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "requests",
    [
        [],
        (),
        [object()],
        [{"method": "POST"}],
        "requests",
        None,
    ],
)
async def test_batch_refuses_anything_but_batch_requests(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient], requests: Any
) -> None:
    """An empty batch or one holding something else is refused; nothing is sent."""
    async with make_client() as client:
        with pytest.raises(InvalidInput):
            await client.batch(requests)
    assert not router.calls


@pytest.mark.anyio
async def test_batch_refuses_a_mix(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """One foreign item among good requests refuses the whole batch before sending."""
    async with make_client() as client:
        with pytest.raises(InvalidInput):
            await client.batch([BatchRequest.create(TABLE, {"call_id": "c-1"}), object()])  # type: ignore[list-item]
    assert not router.calls


@pytest.mark.anyio
async def test_batch_of_a_one_shot_iterable_is_sent_or_refused(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """A generator is either refused, or its requests are all sent; never silently dropped."""
    route = router.post(BATCH_URL).mock(
        side_effect=batch_answer(served("0", 201, {"result": record(0)}))
    )
    requests = [BatchRequest.create(TABLE, {"call_id": "c-1"})]
    async with make_client() as client:
        try:
            outcomes = await client.batch(request for request in requests)  # type: ignore[arg-type]
        except InvalidInput:
            assert not router.calls
            return
    assert len(sent_body(route)["rest_requests"]) == 1
    assert outcomes == [record(0)]


# Outcomes, one per request.


def _html(item_id: str) -> dict[str, Any]:
    return served(
        item_id, 200, raw=b"<html><body>Log in</body></html>", headers={"Content-Type": "text/html"}
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("item", "kind", "status"),
    [
        (served("0", 400, envelope_error("Invalid field", "bad")), PermanentError, 400),
        (served("0", 403, envelope_error("Operation Failed", "ACL")), PermanentError, 403),
        (served("0", 404, envelope_error("No Record found", "")), PermanentError, 404),
        (served("0", 401, envelope_error("User Not Authenticated")), AuthenticationError, 401),
        (served("0", 500, envelope_error("Internal error")), AmbiguousError, 500),
        (served("0", 502, raw=b"Bad Gateway"), AmbiguousError, 502),
        (served("0", 503, raw=b""), AmbiguousError, 503),
        (_html("0"), AmbiguousError, 200),
        (served("0", 201, raw=b'{"result": {"sys_id": "ab'), AmbiguousError, 201),
        (served("0", 201, {"record": record(0)}), AmbiguousError, 201),
        (served("0", 201, {"result": [record(0)]}), AmbiguousError, None),
        (served("0", 201, {"result": "ok"}), AmbiguousError, None),
        (served("0", 201, raw=b""), AmbiguousError, 201),
        (served("0", 200, envelope_error("Failed")), AmbiguousError, 200),
    ],
    ids=[
        "400",
        "403",
        "404",
        "401",
        "500",
        "502",
        "503",
        "html",
        "cut-json",
        "no-result",
        "result-list",
        "result-string",
        "empty-body",
        "failure-envelope",
    ],
)
async def test_each_item_is_classified_as_if_sent_alone(
    router: respx.MockRouter,
    make_client: Callable[..., ServiceNowClient],
    item: dict[str, Any],
    kind: type[ServiceNowError],
    status: int | None,
) -> None:
    """A sub-answer becomes the error the same write would have raised alone; none raised."""
    router.post(BATCH_URL).mock(side_effect=batch_answer(item))
    async with make_client() as client:
        [outcome] = await client.batch([BatchRequest.create(TABLE, {"call_id": "c-1"})])
    assert type(outcome) is kind
    assert isinstance(outcome, ServiceNowError)
    if status is not None:
        assert outcome.status_code == status
    assert f"POST /api/now/table/{TABLE}" in str(outcome)


@pytest.mark.anyio
async def test_refused_item_carries_servicenow_words(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """A 400 sub-answer is a PermanentError with error.message, error.detail and transaction."""
    router.post(BATCH_URL).mock(
        side_effect=batch_answer(
            served(
                "0",
                400,
                envelope_error("Invalid field: foo", "Field foo does not exist"),
                headers={"X-Transaction-ID": "tx-400"},
            )
        )
    )
    async with make_client() as client:
        [outcome] = await client.batch([BatchRequest.update(TABLE, SYS_ID, {"state": "x"})])
    assert isinstance(outcome, PermanentError)
    assert outcome.sn_message == "Invalid field: foo"
    assert outcome.sn_detail == "Field foo does not exist"
    assert outcome.transaction_id == "tx-400"
    assert f"PATCH /api/now/table/{TABLE}/{SYS_ID}" in str(outcome)


@pytest.mark.anyio
async def test_rate_limited_item_carries_retry_after(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """A 429 sub-answer is RateLimited with the sub-answer's Retry-After and limits."""
    router.post(BATCH_URL).mock(
        side_effect=batch_answer(
            served(
                "0",
                429,
                envelope_error("Rate limit exceeded"),
                headers={"Retry-After": "30", **RATE_HEADERS},
            )
        )
    )
    async with make_client() as client:
        [outcome] = await client.batch([BatchRequest.create(TABLE, {"call_id": "c-1"})])
    assert isinstance(outcome, RateLimited)
    assert outcome.retry_after == 30.0
    assert outcome.rate_limit == RATE_LIMIT
    assert outcome.sn_message == "Rate limit exceeded"


@pytest.mark.anyio
async def test_unserviced_item_is_transient_not_ambiguous(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """An id in unserviced_requests was not run: TransientError, safe to send again."""
    router.post(BATCH_URL).mock(
        side_effect=batch_answer(served("0", 201, {"result": record(0)}), unserviced=("1",))
    )
    requests = [
        BatchRequest.create(TABLE, {"call_id": "c-0"}),
        BatchRequest.create(TABLE, {"call_id": "c-1"}),
    ]
    async with make_client() as client:
        first, second = await client.batch(requests)
    assert first == record(0)
    assert type(second) is TransientError
    assert not isinstance(second, AmbiguousError)


@pytest.mark.anyio
async def test_item_missing_from_both_lists_is_ambiguous(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """An id the answer does not mention may have run: AmbiguousError."""
    router.post(BATCH_URL).mock(
        side_effect=batch_answer(served("1", 201, {"result": record(1)}), unserviced=("2",))
    )
    requests = [BatchRequest.create(TABLE, {"call_id": f"c-{n}"}) for n in range(3)]
    async with make_client() as client:
        outcomes = await client.batch(requests)
    assert isinstance(outcomes[0], AmbiguousError)
    assert outcomes[1] == record(1)
    assert type(outcomes[2]) is TransientError


@pytest.mark.anyio
@pytest.mark.parametrize(
    "change",
    [
        {"body": "!!!not base64!!!"},
        {"body": "abc"},
        {"body": 12},
        {"body": {"result": {}}},
        {"status_code": "201"},
        {"status_code": None},
        {"status_code": True},
        {"headers": [{"key": "Content-Type"}]},
        {"headers": "Content-Type: application/json"},
    ],
    ids=[
        "bad-chars",
        "bad-padding",
        "body-int",
        "body-object",
        "status-string",
        "status-null",
        "status-bool",
        "header-no-name",
        "headers-string",
    ],
)
async def test_unreadable_item_is_ambiguous(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient], change: dict[str, Any]
) -> None:
    """A sub-answer with bad base64, a bad status or bad headers is ambiguous, not raised."""
    item = {**served("0", 201, {"result": record(0)}), **change}
    router.post(BATCH_URL).mock(
        side_effect=batch_answer(item, served("1", 201, {"result": record(1)}))
    )
    requests = [BatchRequest.create(TABLE, {"call_id": f"c-{n}"}) for n in range(2)]
    async with make_client() as client:
        first, second = await client.batch(requests)
    assert type(first) is AmbiguousError
    assert second == record(1)


@pytest.mark.anyio
async def test_outcomes_follow_the_requests_order_whatever_the_answer_order(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """Serviced items are matched by id, in any order; unknown ids are ignored."""
    items = [
        served("4", 503, raw=b"busy"),
        served("2", 201, {"result": record(2)}),
        served("9", 201, {"result": record(9)}),
        served("0", 201, {"result": record(0)}),
        served("3", 400, envelope_error("Invalid field")),
        served("5", 429, envelope_error("Too many"), headers={"Retry-After": "7"}),
        served("6", 200, {"result": record(6)}),
    ]
    router.post(BATCH_URL).mock(side_effect=batch_answer(*items, unserviced=("7",)))
    requests = [BatchRequest.create(TABLE, {"call_id": f"c-{n}"}) for n in range(6)]
    requests += [
        BatchRequest.update(TABLE, SYS_ID, {"state": "closed"}),
        BatchRequest.update(TABLE, OTHER_ID, {"state": "closed"}),
        BatchRequest.create(TABLE, {"call_id": "c-8"}),
    ]
    async with make_client() as client:
        outcomes = await client.batch(requests)
    assert len(outcomes) == 9
    assert outcomes[0] == record(0)
    assert isinstance(outcomes[1], AmbiguousError)  # missing from both lists
    assert outcomes[2] == record(2)
    assert isinstance(outcomes[3], PermanentError)
    assert isinstance(outcomes[4], AmbiguousError)
    assert outcomes[4].status_code == 503
    assert isinstance(outcomes[5], RateLimited)
    assert outcomes[5].retry_after == 7.0
    assert outcomes[6] == record(6)
    assert type(outcomes[7]) is TransientError
    assert f"/{OTHER_ID}" in str(outcomes[7])
    assert isinstance(outcomes[8], AmbiguousError)


@pytest.mark.anyio
async def test_the_same_request_twice_gets_two_outcomes(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """A request listed twice is sent twice, under two ids."""
    route = router.post(BATCH_URL).mock(
        side_effect=batch_answer(
            served("0", 201, {"result": record(0)}), served("1", 201, {"result": record(1)})
        )
    )
    request = BatchRequest.create(TABLE, {"call_id": "c-1"})
    async with make_client() as client:
        outcomes = await client.batch([request, request])
    assert outcomes == [record(0), record(1)]
    assert [item["id"] for item in sent_body(route)["rest_requests"]] == ["0", "1"]


# Whole-batch failures.


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, PermanentError),
        (403, PermanentError),
        (404, PermanentError),
        (500, AmbiguousError),
        (502, AmbiguousError),
        (503, AmbiguousError),
        (504, AmbiguousError),
    ],
)
async def test_whole_batch_refusals_and_failures_raise(
    router: respx.MockRouter,
    make_client: Callable[..., ServiceNowClient],
    status: int,
    kind: type[ServiceNowError],
) -> None:
    """A non-2xx answer to the batch raises, classified as a write; it is sent once."""
    route = router.post(BATCH_URL).respond(
        status, json=envelope_error("Batch refused", "why"), headers={"X-Transaction-ID": "tx"}
    )
    async with make_client() as client:
        with pytest.raises(kind) as caught:
            await client.batch([BatchRequest.create(TABLE, {"call_id": "c-1"})])
    assert type(caught.value) is kind
    assert caught.value.status_code == status
    assert caught.value.sn_message == "Batch refused"
    assert caught.value.transaction_id == "tx"
    assert "/api/now/v1/batch" in str(caught.value)
    assert route.call_count == 1


@pytest.mark.anyio
async def test_whole_batch_429_is_rate_limited(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """A 429 on the batch raises RateLimited with Retry-After, and keeps the limits."""
    router.post(BATCH_URL).respond(
        429,
        json=envelope_error("Rate limit exceeded"),
        headers={"Retry-After": "45", **RATE_HEADERS},
    )
    async with make_client() as client:
        with pytest.raises(RateLimited) as caught:
            await client.batch([BatchRequest.create(TABLE, {"call_id": "c-1"})])
        assert client.rate_limit == RATE_LIMIT
    assert caught.value.retry_after == 45.0
    assert caught.value.rate_limit == RATE_LIMIT
    assert not isinstance(caught.value, AmbiguousError)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>Instance Hibernating</html>"),
        httpx.Response(200, text='{"batch_request_id": "x", "serviced_requests": [{"id": "0"'),
        httpx.Response(200, text=""),
        httpx.Response(200, json=[]),
        httpx.Response(200, json="ok"),
        httpx.Response(200, json={"serviced_requests": "none"}),
        httpx.Response(200, json={"serviced_requests": [], "unserviced_requests": "0"}),
        httpx.Response(200, json={"serviced_requests": [{"status_code": 201, "body": ""}]}),
        httpx.Response(200, json={"serviced_requests": [{"id": 0, "status_code": 201}]}),
        httpx.Response(200, json={"serviced_requests": ["0"]}),
        httpx.Response(201, json=None),
    ],
    ids=[
        "html",
        "cut-json",
        "empty",
        "list",
        "string",
        "serviced-not-list",
        "unserviced-not-list",
        "item-without-id",
        "item-numeric-id",
        "item-not-object",
        "null",
    ],
)
async def test_whole_batch_answer_that_is_not_a_batch_answer_is_ambiguous(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient], response: httpx.Response
) -> None:
    """A 2xx whose body is no batch answer raises AmbiguousError: any write may have run."""
    router.post(BATCH_URL).mock(return_value=response)
    async with make_client() as client:
        with pytest.raises(AmbiguousError) as caught:
            await client.batch([BatchRequest.create(TABLE, {"call_id": "c-1"})])
    assert caught.value.status_code == response.status_code


@pytest.mark.anyio
@pytest.mark.parametrize("body", [{"result": record(0)}, {}], ids=["table-answer", "empty"])
async def test_whole_batch_object_without_batch_lists_is_ambiguous(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient], body: dict[str, Any]
) -> None:
    """A 200 object that has neither batch list is not a batch answer: the call raises."""
    router.post(BATCH_URL).respond(200, json=body)
    async with make_client() as client:
        with pytest.raises(AmbiguousError):
            await client.batch([BatchRequest.create(TABLE, {"call_id": "c-1"})])


@pytest.mark.anyio
@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ConnectTimeout])
async def test_connect_failure_is_transient(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient], error: type[Exception]
) -> None:
    """Nothing reached the instance: TransientError, not ambiguous."""
    route = router.post(BATCH_URL).mock(side_effect=error)
    async with make_client() as client:
        with pytest.raises(TransientError) as caught:
            await client.batch([BatchRequest.create(TABLE, {"call_id": "c-1"})])
    assert not isinstance(caught.value, AmbiguousError)
    assert route.call_count == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    "error", [httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteTimeout]
)
async def test_failure_after_sending_is_ambiguous(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient], error: type[Exception]
) -> None:
    """The batch may have run: AmbiguousError, and it is not sent again."""
    route = router.post(BATCH_URL).mock(side_effect=error)
    async with make_client() as client:
        with pytest.raises(AmbiguousError) as caught:
            await client.batch([BatchRequest.create(TABLE, {"call_id": "c-1"})])
    assert caught.value.status_code is None
    assert route.call_count == 1


@pytest.mark.anyio
async def test_401_with_basic_auth_is_an_authentication_error(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """Basic credentials cannot be renewed: one POST, then AuthenticationError."""
    route = router.post(BATCH_URL).respond(401, json=envelope_error("User Not Authenticated"))
    async with make_client() as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.batch([BatchRequest.create(TABLE, {"call_id": "c-1"})])
    assert caught.value.status_code == 401
    assert route.call_count == 1


@pytest.mark.anyio
async def test_401_with_oauth_renews_the_token_once_and_resends(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """A 401 on the batch renews the OAuth2 token once and sends the same batch again."""
    token = router.post("/oauth_token.do")
    token.side_effect = [
        httpx.Response(200, json=token_body("T1")),
        httpx.Response(200, json=token_body("T2")),
    ]
    answer = batch_answer(served("0", 201, {"result": record(0)}))
    route = router.post(BATCH_URL).mock(
        side_effect=lambda request: (
            answer(request)
            if request.headers["Authorization"] == "Bearer T2"
            else httpx.Response(401, json=envelope_error("User Not Authenticated"))
        )
    )
    async with make_client(auth=OAuth2ClientCredentials("c", SECRET)) as client:
        outcomes = await client.batch([BatchRequest.create(TABLE, {"call_id": "c-1"})])
    assert outcomes == [record(0)]
    assert token.call_count == 2
    assert route.call_count == 2
    assert [call.request.headers["Authorization"] for call in route.calls] == [
        "Bearer T1",
        "Bearer T2",
    ]
    assert sent_body(route, 0)["rest_requests"] == sent_body(route, 1)["rest_requests"]


@pytest.mark.anyio
async def test_second_401_with_oauth_raises(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """A 401 with the renewed token too is an AuthenticationError; no loop of renewals."""
    token = router.post("/oauth_token.do").respond(200, json=token_body("T"))
    route = router.post(BATCH_URL).respond(401, json=envelope_error("User Not Authenticated"))
    async with make_client(auth=OAuth2ClientCredentials("c", SECRET)) as client:
        with pytest.raises(AuthenticationError):
            await client.batch([BatchRequest.create(TABLE, {"call_id": "c-1"})])
    assert token.call_count == 2
    assert route.call_count == 2


# Rate-limit headers.


@pytest.mark.anyio
async def test_rate_limit_headers_on_the_batch_answer_update_the_client(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """X-RateLimit-* on the outer answer become client.rate_limit; an answer without keeps it."""
    route = router.post(BATCH_URL)
    route.side_effect = [
        batch_answer(served("0", 201, {"result": record(0)}), headers=RATE_HEADERS),
        batch_answer(served("0", 201, {"result": record(1)})),
    ]
    async with make_client() as client:
        assert client.rate_limit is None
        await client.batch([BatchRequest.create(TABLE, {"call_id": "c-1"})])
        assert client.rate_limit == RATE_LIMIT
        await client.batch([BatchRequest.create(TABLE, {"call_id": "c-2"})])
        assert client.rate_limit == RATE_LIMIT


# Logs.


@pytest.mark.anyio
async def test_failing_batches_log_no_credential_or_phone_number(
    router: respx.MockRouter,
    make_client: Callable[..., ServiceNowClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Logged lines about failing batches and items carry no password and no full phone number."""
    echo = envelope_error(f"Invalid phone_number {PHONE}", f"value {PHONE} rejected")
    route = router.post(BATCH_URL)
    route.side_effect = [
        batch_answer(
            served("0", 400, echo),
            served("1", 500, echo),
            served("2", 429, echo, headers={"Retry-After": "5"}),
            served("3", 200, raw=f"<html>{PHONE}</html>".encode()),
            unserviced=("4",),
        ),
        httpx.Response(400, json=echo),
        httpx.Response(503, json=echo),
        httpx.Response(200, text=f'{{"serviced_requests": "{PHONE}"}}'),
        httpx.ReadTimeout(f"timed out {PHONE}"),
    ]
    payload = {"phone_number": PHONE, "caller": f"{PHONE} (mobile)"}
    requests = [BatchRequest.create(TABLE, payload) for _ in range(6)]
    caplog.set_level(logging.DEBUG)
    shown: list[str] = []
    async with make_client() as client:
        outcomes = await client.batch(requests)
        shown += [str(outcome) for outcome in outcomes]
        for _ in range(4):
            with pytest.raises(ServiceNowError) as caught:
                await client.batch(requests)
            shown.append(str(caught.value))
    assert all(isinstance(outcome, ServiceNowError) for outcome in outcomes)
    assert caplog.records
    logged = [caplog.text] + [entry.getMessage() for entry in caplog.records]
    for text in logged + shown:
        assert PHONE_DIGITS not in text
        assert PASSWORD not in text
    assert f"POST /api/now/table/{TABLE}" in caplog.text
    assert "/api/now/v1/batch" in caplog.text


@pytest.mark.anyio
async def test_failing_batch_with_oauth_logs_no_secret_or_token(
    router: respx.MockRouter,
    make_client: Callable[..., ServiceNowClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Renewing a token for a batch and failing logs neither the secret nor either token."""
    router.post("/oauth_token.do").side_effect = [
        httpx.Response(200, json=token_body("ACCESS-ONE-never-shown")),
        httpx.Response(200, json=token_body("ACCESS-TWO-never-shown")),
    ]
    router.post(BATCH_URL).respond(401, json=envelope_error("User Not Authenticated"))
    caplog.set_level(logging.DEBUG)
    async with make_client(auth=OAuth2ClientCredentials("c", SECRET)) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.batch([BatchRequest.create(TABLE, {"phone_number": PHONE})])
    assert caplog.records
    for text in [caplog.text, str(caught.value)] + [r.getMessage() for r in caplog.records]:
        for secret in (SECRET, "ACCESS-ONE-never-shown", "ACCESS-TWO-never-shown", PHONE_DIGITS):
            assert secret not in text
