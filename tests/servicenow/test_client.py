"""The Table API calls, their headers and parameters, options, failover, probe and logging."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from callresilience import (
    AmbiguousError,
    InvalidInput,
    PermanentError,
    RateLimit,
    RateLimited,
    TransientError,
)
from callresilience.servicenow import BasicAuth, Query, ServiceNowClient, ref_value
from callresilience.testing import ManualClock

from .conftest import BASE, PASSWORD, TABLE_URL, envelope_error

TABLE = "sn_openframe_phone_log"
SYS_ID = "9d385017c611228701d22104cc95c371"
AGENT_REF = {
    "link": f"{BASE}/api/now/table/sys_user/5137153cc611227c000bbd1bd8cd2005",
    "value": "5137153cc611227c000bbd1bd8cd2005",
}
RECORD = {"sys_id": SYS_ID, "call_id": "c-1", "agent": AGENT_REF, "phone_number": "+14155550100"}


@pytest.mark.anyio
async def test_create_posts_json_with_both_headers(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """create() POSTs the payload as JSON with Accept and Content-Type, and unwraps result."""
    route = router.post(TABLE_URL).respond(
        201, json={"result": RECORD}, headers={"Location": f"{TABLE_URL}/{SYS_ID}"}
    )
    async with make_client() as client:
        record = await client.create(TABLE, {"call_id": "c-1", "phone_number": "+14155550100"})
    request = route.calls.last.request
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {"call_id": "c-1", "phone_number": "+14155550100"}
    assert record == RECORD


@pytest.mark.anyio
async def test_get_reads_one_record_with_fields(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """get() reads /table/{table}/{sys_id}, asking for the given fields."""
    route = router.get(f"{TABLE_URL}/{SYS_ID}").respond(200, json={"result": RECORD})
    async with make_client() as client:
        record = await client.get(TABLE, SYS_ID, fields=["sys_id", "agent"])
    request = route.calls.last.request
    assert request.url.params["sysparm_fields"] == "sys_id,agent"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Content-Type"] == "application/json"
    assert ref_value(record["agent"]) == "5137153cc611227c000bbd1bd8cd2005"


@pytest.mark.anyio
async def test_get_of_a_missing_record_is_permanent(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """A 404 on get() is a PermanentError carrying ServiceNow's words."""
    router.get(f"{TABLE_URL}/{SYS_ID}").respond(
        404,
        json=envelope_error(
            "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
        ),
        headers={"X-Transaction-ID": "e1f2"},
    )
    async with make_client() as client:
        with pytest.raises(PermanentError) as caught:
            await client.get(TABLE, SYS_ID)
    assert caught.value.status_code == 404
    assert caught.value.sn_detail == "Record doesn't exist or ACL restricts the record retrieval"
    assert caught.value.transaction_id == "e1f2"


@pytest.mark.anyio
async def test_query_sends_parameters_and_exposes_total_count(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """query() sends sysparm_query/fields/limit/offset and returns X-Total-Count."""
    route = router.get(TABLE_URL).respond(
        200, json={"result": [RECORD]}, headers={"X-Total-Count": "57"}
    )
    async with make_client(exclude_reference_link=True) as client:
        result = await client.query(
            TABLE,
            Query().eq("call_id", "c-1").order_by_desc("sys_created_on"),
            fields="sys_id",
            limit=1,
            offset=20,
        )
    params = route.calls.last.request.url.params
    assert params["sysparm_query"] == "call_id=c-1^ORDERBYDESCsys_created_on"
    assert params["sysparm_fields"] == "sys_id"
    assert params["sysparm_limit"] == "1"
    assert params["sysparm_offset"] == "20"
    assert params["sysparm_exclude_reference_link"] == "true"
    assert result.total_count == 57
    assert list(result) == [RECORD]
    assert len(result) == 1


@pytest.mark.anyio
async def test_query_no_record_found_is_empty(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """The older API's 404 "No Record found" for an empty match is an empty result."""
    router.get(TABLE_URL).respond(
        404,
        json=envelope_error(
            "No Record found", "Records matching query not found. Check query parameter"
        ),
    )
    async with make_client() as client:
        result = await client.query(TABLE, Query().eq("call_id", "nope"))
    assert result.records == ()
    assert result.total_count == 0


@pytest.mark.anyio
async def test_query_other_404_is_permanent(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """A 404 that is not "No Record found" (a wrong path, say) stays a PermanentError."""
    router.get(TABLE_URL).respond(404, text="Not Found")
    async with make_client() as client:
        with pytest.raises(PermanentError):
            await client.query(TABLE)


@pytest.mark.anyio
@pytest.mark.parametrize("result", [{"sys_id": "a"}, [1, 2], None])
async def test_query_result_that_is_not_a_list_is_transient(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient], result: Any
) -> None:
    """A list read whose result is not a list of records is broken, so transient."""
    router.get(TABLE_URL).respond(200, json={"result": result})
    async with make_client() as client:
        with pytest.raises(TransientError, match="not a list"):
            await client.query(TABLE)


@pytest.mark.anyio
async def test_record_read_whose_result_is_not_a_record(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """A single-record answer that is not an object: transient on get, ambiguous on writes."""
    router.get(f"{TABLE_URL}/{SYS_ID}").respond(200, json={"result": []})
    router.post(TABLE_URL).respond(201, json={"result": "done"})
    async with make_client() as client:
        with pytest.raises(TransientError, match="not a record"):
            await client.get(TABLE, SYS_ID)
        with pytest.raises(AmbiguousError, match="not a record"):
            await client.create(TABLE, {"call_id": "c-1"})


@pytest.mark.anyio
async def test_update_patches_the_record(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """update() PATCHes /table/{table}/{sys_id} with the changed fields."""
    route = router.patch(f"{TABLE_URL}/{SYS_ID}").respond(200, json={"result": RECORD})
    async with make_client() as client:
        record = await client.update(TABLE, SYS_ID, {"end_time": "2026-03-01 12:00:00"})
    request = route.calls.last.request
    assert request.method == "PATCH"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {"end_time": "2026-03-01 12:00:00"}
    assert record["sys_id"] == SYS_ID


@pytest.mark.anyio
async def test_arguments_are_checked_before_sending(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """Bad tables, sys_ids, payloads, fields, limits and raw-string queries never reach the wire."""
    async with make_client() as client:
        with pytest.raises(InvalidInput, match="table"):
            await client.create("incident; drop", {})
        with pytest.raises(InvalidInput, match="sys_id"):
            await client.get(TABLE, "../sys_user")
        with pytest.raises(InvalidInput, match="payload"):
            await client.update(TABLE, SYS_ID, {"Bad Key": "x"})
        with pytest.raises(InvalidInput, match="payload"):
            await client.create(TABLE, ["call_id"])  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="fields"):
            await client.get(TABLE, SYS_ID, fields=["sys_id,agent"])
        with pytest.raises(InvalidInput, match="Query"):
            await client.query(TABLE, "call_id=x^ORactive=true")  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="limit"):
            await client.query(TABLE, limit=0)
        with pytest.raises(InvalidInput, match="offset"):
            await client.query(TABLE, offset=-1)
    assert not router.calls


@pytest.mark.anyio
async def test_empty_query_and_fields_send_no_parameters(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """An empty Query and an empty field list add no sysparm_ parameters."""
    route = router.get(TABLE_URL).respond(200, json={"result": []})
    async with make_client() as client:
        await client.query(TABLE, Query(), fields=[])
    assert route.calls.last.request.url.query == b""


def test_ref_value_reads_both_reference_forms() -> None:
    """ref_value() gives the sys_id of {"link","value"} and of a bare string; empty is None."""
    assert ref_value(AGENT_REF) == "5137153cc611227c000bbd1bd8cd2005"
    assert ref_value("5137153cc611227c000bbd1bd8cd2005") == "5137153cc611227c000bbd1bd8cd2005"
    assert ref_value({"link": "x", "value": ""}) is None
    assert ref_value("") is None
    assert ref_value(None) is None
    assert ref_value(7) is None


# Options.


def test_timeouts_default_explicitly_and_accept_timedelta() -> None:
    """Every timeout has a finite default, and each accepts seconds or a timedelta."""
    client = ServiceNowClient(BASE, auth=_basic())
    assert client.timeout == httpx.Timeout(connect=5.0, read=30.0, write=10.0, pool=5.0)
    client = ServiceNowClient(
        BASE,
        auth=_basic(),
        connect_timeout=timedelta(seconds=2),
        read_timeout=timedelta(minutes=1),
        write_timeout=3,
        pool_timeout=0.5,
    )
    assert client.timeout == httpx.Timeout(connect=2.0, read=60.0, write=3.0, pool=0.5)


@pytest.mark.parametrize(
    "options",
    [
        {"read_timeout": 0},
        {"connect_timeout": -1},
        {"write_timeout": float("nan")},
        {"pool_timeout": "5"},
        {"read_timeout": True},
        {"create_attempts": 0},
        {"probe_table": "sys user"},
        {"verify": "yes"},
        {"verify": False, "transport": httpx.MockTransport(lambda request: httpx.Response(200))},
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    """Nonsense options raise InvalidInput at construction, not at the first request."""
    with pytest.raises(InvalidInput):
        ServiceNowClient(BASE, auth=_basic(), **options)


def _basic() -> BasicAuth:
    return BasicAuth("integration", PASSWORD)


def _ssl_context(client: ServiceNowClient) -> ssl.SSLContext:
    transport = client._http._transport
    assert isinstance(transport, httpx.AsyncHTTPTransport)
    context = transport._pool._ssl_context
    assert context is not None
    return context


def test_tls_is_verified_by_default_and_can_be_configured() -> None:
    """The default transport verifies certificates; verify=False or a context changes that."""
    assert _ssl_context(ServiceNowClient(BASE, auth=_basic())).verify_mode == ssl.CERT_REQUIRED
    unverified = ServiceNowClient(BASE, auth=_basic(), verify=False)
    assert _ssl_context(unverified).verify_mode == ssl.CERT_NONE
    mine = ssl.create_default_context()
    assert _ssl_context(ServiceNowClient(BASE, auth=_basic(), verify=mine)) is mine


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.service-now.com",
        "https://",
        "not a url",
        "http://[::1",
        "https://user:hunter2@example.service-now.com",
        "https://example.service-now.com/?x=1",
        "https://example.service-now.com/#top",
    ],
)
def test_bad_base_urls_are_refused_without_echoing_credentials(url: str) -> None:
    """A base URL must be http(s) with a host and no credentials, query or fragment."""
    with pytest.raises(InvalidInput) as caught:
        ServiceNowClient(url, auth=_basic())
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("urls", [[], [BASE, BASE + "/"], [42]])
def test_bad_base_url_lists_are_refused(urls: list[Any]) -> None:
    """An empty list, a URL given twice, or a non-string is refused."""
    with pytest.raises(InvalidInput):
        ServiceNowClient(urls, auth=_basic())


@pytest.mark.anyio
async def test_default_transport_is_httpx_own() -> None:
    """Without transport=, requests go through httpx's transport (patched here by respx)."""
    with respx.mock(base_url=BASE) as mocked:
        mocked.get(TABLE_URL).respond(200, json={"result": []})
        async with ServiceNowClient(BASE + "/", auth=_basic()) as client:
            assert client.endpoint == BASE
            await client.query(TABLE)
        assert mocked.calls.call_count == 1


# Rate limits.


@pytest.mark.anyio
async def test_rate_limit_is_parsed_and_kept_on_the_client(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient], clock: ManualClock
) -> None:
    """A 429 carries Retry-After (seconds or date) and the limits; the client keeps the last."""
    headers = {
        "X-RateLimit-Limit": "100",
        "X-RateLimit-Reset": "1767229200",
        "X-RateLimit-Rule": "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
    }
    route = router.get(TABLE_URL)
    route.side_effect = [
        httpx.Response(200, json={"result": []}, headers=headers),
        httpx.Response(
            429,
            json=envelope_error(
                "Rate limit exceeded", "Rate limit of 100 requests per hour for Table API exceeded"
            ),
            headers={**headers, "Retry-After": "Thu, 01 Jan 2026 00:00:45 GMT"},
        ),
        httpx.Response(200, json={"result": []}),
    ]
    expected = RateLimit(
        limit=100,
        reset=datetime(2026, 1, 1, 1, tzinfo=UTC),
        rule="0a1b2c3d4e5f60718293a4b5c6d7e8f9",
    )
    async with make_client() as client:
        assert client.rate_limit is None
        await client.query(TABLE)
        assert client.rate_limit == expected
        clock.advance(15)
        with pytest.raises(RateLimited) as caught:
            await client.query(TABLE)
        await client.query(TABLE)
        assert client.rate_limit == expected  # a response without the headers keeps the last
    assert caught.value.retry_after == 30.0
    assert caught.value.rate_limit == expected
    assert caught.value.sn_message == "Rate limit exceeded"


# Failover.

A = "https://a.example.com"
B = "https://b.example.com"
C = "https://c.example.com"


def _hosts(router: respx.MockRouter) -> list[str]:
    return [call.request.url.host for call in router.calls]


@pytest.mark.anyio
@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ConnectTimeout])
async def test_unreachable_endpoint_moves_to_the_next_at_once(
    make_client: Callable[..., ServiceNowClient], error: type[Exception]
) -> None:
    """A connect failure sends the same request to the next URL, which stays in use."""
    router = respx.MockRouter(assert_all_called=False)
    router.post(f"{A}/api/now/table/{TABLE}").mock(side_effect=error)
    router.post(f"{B}/api/now/table/{TABLE}").respond(201, json={"result": RECORD})
    transport = httpx.MockTransport(router.async_handler)
    async with make_client(base_url=[A, B], transport=transport) as client:
        assert client.endpoint == A
        assert client.endpoints == (A, B)
        await client.create(TABLE, {"call_id": "c-1"})
        assert client.endpoint == B
        await client.create(TABLE, {"call_id": "c-2"})
    assert _hosts(router) == ["a.example.com", "b.example.com", "b.example.com"]


@pytest.mark.anyio
async def test_endpoints_rotate_and_wrap_round(
    make_client: Callable[..., ServiceNowClient],
) -> None:
    """The client stays on a URL until it fails, then takes the next, wrapping round."""
    healthy: set[str] = {"a.example.com"}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host not in healthy:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"result": []})

    transport = httpx.MockTransport(answer)
    async with make_client(base_url=[A, B, C], transport=transport) as client:
        await client.query(TABLE)
        assert client.endpoint == A
        healthy = {"c.example.com"}
        await client.query(TABLE)  # A then B fail, C answers
        assert client.endpoint == C
        healthy = {"a.example.com", "b.example.com"}
        await client.query(TABLE)  # C fails, wraps to A
        assert client.endpoint == A
        healthy = set()
        with pytest.raises(TransientError):
            await client.query(TABLE)  # each URL tried once, then the error
        assert client.endpoint == A


@pytest.mark.anyio
async def test_timeout_after_sending_switches_without_resending(
    make_client: Callable[..., ServiceNowClient],
) -> None:
    """A read timeout moves to the next URL for later requests but never resends a write."""
    router = respx.MockRouter(assert_all_called=False)
    router.post(f"{A}/api/now/table/{TABLE}").mock(side_effect=httpx.ReadTimeout)
    router.post(f"{B}/api/now/table/{TABLE}").respond(201, json={"result": RECORD})
    transport = httpx.MockTransport(router.async_handler)
    async with make_client(base_url=[A, B], transport=transport) as client:
        with pytest.raises(AmbiguousError):
            await client.create(TABLE, {"call_id": "c-1"})
        assert client.endpoint == B
    assert _hosts(router) == ["a.example.com"]


@pytest.mark.anyio
@pytest.mark.parametrize("error", [httpx.PoolTimeout, httpx.ReadError])
async def test_local_or_midstream_errors_do_not_switch(
    make_client: Callable[..., ServiceNowClient], error: type[Exception]
) -> None:
    """A full local pool or a broken read is not the endpoint's fault: no switch."""
    router = respx.MockRouter(assert_all_called=False)
    router.get(url__startswith=A).mock(side_effect=error)
    transport = httpx.MockTransport(router.async_handler)
    async with make_client(base_url=[A, B], transport=transport) as client:
        with pytest.raises(TransientError):
            await client.query(TABLE)
        assert client.endpoint == A


@pytest.mark.anyio
async def test_simultaneous_failures_move_only_once(
    make_client: Callable[..., ServiceNowClient],
) -> None:
    """Requests failing together on one URL move the client one step, not one each."""
    gate = asyncio.Event()

    async def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a.example.com":
            await gate.wait()
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(200, json={"result": []})

    transport = httpx.MockTransport(answer)
    async with make_client(base_url=[A, B, C], transport=transport) as client:
        tasks = [asyncio.create_task(client.query(TABLE)) for _ in range(5)]
        await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(result, TransientError) for result in results)
        assert client.endpoint == B


# Probe.


@pytest.mark.anyio
async def test_probe_reads_one_sys_id_and_returns_latency(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient], clock: ManualClock
) -> None:
    """probe() GETs one sys_id from sys_user (or the configured table) and times it."""

    def slow(request: httpx.Request) -> httpx.Response:
        clock.advance(0.25)
        return httpx.Response(200, json={"result": [{"sys_id": SYS_ID}]})

    route = router.get(f"{BASE}/api/now/table/sys_user").mock(side_effect=slow)
    other = router.get(f"{BASE}/api/now/table/sys_properties").mock(side_effect=slow)
    async with make_client() as client:
        assert await client.probe() == 0.25
    params = route.calls.last.request.url.params
    assert (params["sysparm_limit"], params["sysparm_fields"]) == ("1", "sys_id")
    async with make_client(probe_table="sys_properties") as client:
        await client.probe()
    assert other.call_count == 1


@pytest.mark.anyio
async def test_probe_raises_the_classified_error(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """A failed probe raises the same typed error as any read."""
    router.get(f"{BASE}/api/now/table/sys_user").respond(
        200, text="<html>Instance Hibernating page</html>", headers={"Content-Type": "text/html"}
    )
    async with make_client() as client:
        with pytest.raises(TransientError, match="hibernating"):
            await client.probe()


# Logging and what errors show.


@pytest.mark.anyio
async def test_logs_show_no_phone_numbers_secrets_or_query_values(
    router: respx.MockRouter,
    make_client: Callable[..., ServiceNowClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Log lines and errors name method and path only: no payload, query value or secret."""
    router.post(TABLE_URL).respond(
        400,
        json=envelope_error("Invalid value +14155550100", " "),
        headers={"X-Transaction-ID": "t"},
    )
    router.get(TABLE_URL).respond(503, text="busy")
    caplog.set_level(logging.DEBUG, logger="callresilience.servicenow")
    async with make_client() as client:
        with pytest.raises(PermanentError) as permanent:
            await client.create(TABLE, {"phone_number": "+14155550100"})
        with pytest.raises(TransientError) as transient:
            await client.query(TABLE, Query().eq("phone_number", "+14155550100"))
    shown = caplog.text + str(permanent.value) + str(transient.value)
    assert "4155550100" not in shown
    assert PASSWORD not in shown
    assert f"POST /api/now/table/{TABLE}" in caplog.text
    assert all(record.name == "callresilience.servicenow" for record in caplog.records)


def test_client_repr_shows_endpoint_not_secrets() -> None:
    """The client's repr names the endpoint, auth kind and timeouts, never a secret."""
    text = repr(ServiceNowClient(BASE, auth=_basic()))
    assert BASE in text
    assert "BasicAuth(username='integration')" in text
    assert PASSWORD not in text
