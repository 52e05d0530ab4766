"""create_once: one record per correlation value, whatever fails and whenever."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callresilience import (
    AmbiguousError,
    InvalidInput,
    PermanentError,
    RateLimited,
    TransientError,
    UnsafeQueryValue,
)
from callresilience.servicenow import BasicAuth, ServiceNowClient
from callresilience.testing import ManualClock

from .conftest import BASE, TABLE_URL, Table, envelope_error

TABLE = "sn_openframe_phone_log"
CALL = ("call_id", "0f8e9c1a-3b2d-4c5e-8f70-112233445566")
PAYLOAD = {"phone_number": "+14155550100", "call_type": "inbound"}
CANCELLED = envelope_error("Transaction cancelled: maximum execution time exceeded", None)


#: A scripted answer to one request: it may commit to the table, answer, or raise.
Fault = Callable[[httpx.Request, Table], httpx.Response]


def wire(router: respx.MockRouter, table: Table, *posts: Fault, gets: Fault | None = None) -> None:
    """Route POSTs through `posts` in turn (then success) and GETs to `gets` or the lookup."""
    script = list(posts)
    router.post(TABLE_URL).mock(
        side_effect=lambda request: (script.pop(0) if script else created)(request, table)
    )
    router.get(TABLE_URL).mock(side_effect=lambda request: (gets or lookup)(request, table))


def created(request: httpx.Request, table: Table) -> httpx.Response:
    """Commit and answer 201."""
    return table.created(request)


def lookup(request: httpx.Request, table: Table) -> httpx.Response:
    """Answer a lookup from the table."""
    return table.lookup(request)


def store_then(error: type[httpx.RequestError]) -> Fault:
    """Commit the record, then lose the answer with `error`."""

    def effect(request: httpx.Request, table: Table) -> httpx.Response:
        table.store(request)
        raise error("answer lost", request=request)

    return effect


def store_then_status(code: int, body: Any = None) -> Fault:
    """Commit the record, then answer `code` anyway."""

    def effect(request: httpx.Request, table: Table) -> httpx.Response:
        table.store(request)
        return httpx.Response(code, json=body)

    return effect


def fail(error: type[httpx.RequestError]) -> Fault:
    """Raise `error` without committing."""

    def effect(request: httpx.Request, table: Table) -> httpx.Response:
        raise error("failed", request=request)

    return effect


def status(code: int, body: Any = None, headers: dict[str, str] | None = None) -> Fault:
    """Answer `code` without committing."""
    return lambda request, table: httpx.Response(code, json=body, headers=headers)


@pytest.fixture
def table() -> Table:
    """A fresh table."""
    return Table()


async def run(make_client: Callable[..., ServiceNowClient], **options: Any) -> Any:
    """Call create_once for CALL once, on a new client."""
    async with make_client() as client:
        return await client.create_once(TABLE, PAYLOAD, correlation=CALL, **options)


@pytest.mark.anyio
async def test_healthy_create_posts_once_and_never_looks_up(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient], table: Table
) -> None:
    """With nothing failing, one POST creates the record, with the correlation field added."""
    wire(router, table)
    result = await run(make_client)
    assert result.created
    assert result.attempts == 1
    assert result.record["call_id"] == CALL[1]
    assert result.sys_id == table.records[0]["sys_id"]
    assert (table.posts, table.lookups) == (1, 0)


@pytest.mark.anyio
async def test_fields_reach_every_post(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient], table: Table
) -> None:
    """fields= (a generator too) goes with each POST, the one after a refused POST included."""
    wire(router, table, status(500, CANCELLED))
    result = await run(make_client, fields=(name for name in ["sys_id"]))
    assert result.created
    posts = [call.request for call in router.calls if call.request.method == "POST"]
    assert [request.url.params.get("sysparm_fields") for request in posts] == ["sys_id"] * 2


@pytest.mark.anyio
@pytest.mark.parametrize("fields", [("sys_id", "x&sysparm_query=y"), 7])
async def test_bad_fields_are_refused_before_anything_is_sent(
    router: respx.MockRouter,
    make_client: Callable[..., ServiceNowClient],
    table: Table,
    fields: Any,
) -> None:
    """A field name that could change the URL raises InvalidInput; nothing is sent."""
    wire(router, table)
    with pytest.raises(InvalidInput) as caught:
        await run(make_client, fields=fields, lookup_first=True)
    assert caught.value.field == "fields"
    assert not router.calls


@pytest.mark.anyio
@pytest.mark.parametrize(
    "lose_answer",
    [
        store_then(httpx.ReadTimeout),
        store_then(httpx.WriteTimeout),
        store_then(httpx.RemoteProtocolError),
        store_then(httpx.ReadError),
        store_then_status(500, CANCELLED),
        store_then_status(502),
        store_then_status(503),
        store_then_status(504),
        store_then_status(200, None),
    ],
)
async def test_committed_write_with_lost_answer_is_adopted(
    router: respx.MockRouter,
    make_client: Callable[..., ServiceNowClient],
    table: Table,
    lose_answer: Fault,
) -> None:
    """When the write committed but its answer was lost, the lookup finds it: no second POST."""
    wire(router, table, lose_answer)
    result = await run(make_client)
    assert not result.created
    assert result.attempts == 1
    assert result.sys_id == table.records[0]["sys_id"]
    assert table.count(*CALL) == 1
    assert table.posts == 1
    lookup = router.routes[1].calls.last.request.url.params
    assert lookup["sysparm_query"] == f"call_id={CALL[1]}^ORDERBYsys_created_on"
    assert lookup["sysparm_limit"] == "1"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "answered_failure",
    [status(503), status(500, CANCELLED), status(501), status(200, {"status": "failure"})],
)
async def test_answered_failure_without_commit_is_posted_again(
    router: respx.MockRouter,
    make_client: Callable[..., ServiceNowClient],
    table: Table,
    answered_failure: Fault,
) -> None:
    """When the instance answered a failure and the lookup finds nothing, it posts again."""
    wire(router, table, answered_failure)
    result = await run(make_client)
    assert result.created
    assert result.attempts == 2
    assert table.count(*CALL) == 1
    assert table.lookups == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    "unanswered",
    [fail(httpx.ReadTimeout), fail(httpx.RemoteProtocolError), status(502), status(504)],
)
async def test_unanswered_failure_is_not_posted_again_at_once(
    router: respx.MockRouter,
    make_client: Callable[..., ServiceNowClient],
    table: Table,
    unanswered: Fault,
) -> None:
    """After a timeout, reset, 502 or 504 the first POST may still run: raise, don't repost."""
    wire(router, table, unanswered)
    with pytest.raises(AmbiguousError, match="lookup_first=True") as caught:
        await run(make_client)
    assert table.posts == 0
    assert table.lookups == 1
    assert isinstance(caught.value.__cause__, AmbiguousError)
    # Later (the drainer's backoff), with lookup_first: nothing there, so one POST.
    result = await run(make_client, lookup_first=True)
    assert result.created
    assert table.count(*CALL) == 1


@pytest.mark.anyio
async def test_late_commit_is_found_by_the_next_call(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient], table: Table
) -> None:
    """A write that commits after the lookup missed it is adopted by the next lookup_first call."""
    pending: list[httpx.Request] = []

    def slow(request: httpx.Request, table: Table) -> httpx.Response:
        pending.append(request)  # the instance is still working on it
        raise httpx.ReadTimeout("no answer", request=request)

    wire(router, table, slow)
    with pytest.raises(AmbiguousError):
        await run(make_client)
    table.store(pending[0])  # ...and commits later
    result = await run(make_client, lookup_first=True)
    assert not result.created
    assert result.attempts == 0
    assert table.count(*CALL) == 1


@pytest.mark.anyio
async def test_attempts_are_bounded(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient], table: Table
) -> None:
    """When every POST fails ambiguously, it stops after max_attempts and raises AmbiguousError."""
    wire(router, table, *[status(503)] * 10)
    with pytest.raises(AmbiguousError, match="3 creates") as caught:
        await run(make_client)
    assert router.routes[0].call_count == 3
    assert caught.value.status_code == 503
    router.routes[0].reset()
    with pytest.raises(AmbiguousError, match="5 creates"):
        await run(make_client, max_attempts=5)
    assert router.routes[0].call_count == 5
    assert table.count(*CALL) == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("lookup_answer", "retry_after"),
    [
        (status(503), None),
        (status(429, envelope_error("Rate limit exceeded"), {"Retry-After": "30"}), 30.0),
        (fail(httpx.ConnectError), None),
        (fail(httpx.ReadTimeout), None),
    ],
)
async def test_failed_lookup_posts_nothing_and_raises_ambiguous(
    router: respx.MockRouter,
    make_client: Callable[..., ServiceNowClient],
    table: Table,
    lookup_answer: Fault,
    retry_after: float | None,
) -> None:
    """If the lookup fails, nothing more is posted; the error keeps the lookup's Retry-After."""
    wire(router, table, status(503), gets=lookup_answer)
    with pytest.raises(AmbiguousError, match="lookup") as caught:
        await run(make_client)
    assert router.routes[0].call_count == 1
    assert caught.value.retry_after == retry_after
    assert isinstance(caught.value.__cause__, TransientError)
    if retry_after is not None:
        assert isinstance(caught.value.__cause__, RateLimited)


@pytest.mark.anyio
async def test_lookup_that_ignores_the_condition_is_permanent(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient], table: Table
) -> None:
    """A lookup returning a record with another correlation value means the field is unusable."""
    table.records.append({"sys_id": "f" * 32, "call_id": "someone-else"})

    def ignores_query(request: httpx.Request, table: Table) -> httpx.Response:
        return httpx.Response(200, json={"result": table.records[:1]})

    wire(router, table, status(503), gets=ignores_query)
    with pytest.raises(PermanentError, match="ignored the condition"):
        await run(make_client)
    assert router.routes[0].call_count == 1


@pytest.mark.anyio
async def test_lookup_first_adopts_without_posting(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient], table: Table
) -> None:
    """With lookup_first, an existing record is adopted and nothing is posted."""
    table.records.append({"sys_id": "e" * 32, "call_id": CALL[1], "agent": {"value": "x"}})
    wire(router, table)
    result = await run(make_client, lookup_first=True)
    assert (result.created, result.attempts, result.sys_id) == (False, 0, "e" * 32)
    assert table.posts == 0


@pytest.mark.anyio
async def test_nothing_written_errors_pass_through(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient], table: Table
) -> None:
    """A connect failure or a 429 on the POST is transient: raised as is, with no lookup."""
    wire(router, table, fail(httpx.ConnectError), status(429), status(400, envelope_error("Bad")))
    with pytest.raises(TransientError):
        await run(make_client)
    with pytest.raises(RateLimited):
        await run(make_client)
    with pytest.raises(PermanentError):
        await run(make_client)
    assert table.lookups == 0


@pytest.mark.anyio
async def test_correlation_is_checked(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient], table: Table
) -> None:
    """Unsafe or empty correlation values, and a payload that disagrees, are refused."""
    async with make_client() as client:
        with pytest.raises(UnsafeQueryValue):
            await client.create_once(TABLE, {}, correlation=("call_id", "x^ORsys_id!=0"))
        with pytest.raises(InvalidInput, match="empty"):
            await client.create_once(TABLE, {}, correlation=("call_id", ""))
        with pytest.raises(InvalidInput, match="differs"):
            await client.create_once(TABLE, {"call_id": "a"}, correlation=("call_id", "b"))
        with pytest.raises(InvalidInput, match="max_attempts"):
            await client.create_once(TABLE, {}, correlation=CALL, max_attempts=0)
    assert not router.calls


@pytest.mark.anyio
async def test_payload_may_already_hold_the_correlation_value(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient], table: Table
) -> None:
    """A payload that already holds the same correlation value is sent as is."""
    wire(router, table)
    async with make_client() as client:
        result = await client.create_once(TABLE, {**PAYLOAD, "call_id": CALL[1]}, correlation=CALL)
    assert result.created
    assert table.records[0]["call_id"] == CALL[1]


# The property: any sequence of failures, retried the way the drainer will, gives one record.

_FAULTS = {
    "ok": None,
    "store+read_timeout": store_then(httpx.ReadTimeout),
    "store+reset": store_then(httpx.RemoteProtocolError),
    "store+500": store_then_status(500, CANCELLED),
    "store+broken200": store_then_status(200, None),
    "store+504": store_then_status(504),
    "read_timeout": fail(httpx.ReadTimeout),
    "reset": fail(httpx.RemoteProtocolError),
    "connect": fail(httpx.ConnectError),
    "503": status(503),
    "502": status(502),
    "429": status(429),
}
_LOOKUP_FAULTS = {"ok": None, "503": status(503), "timeout": fail(httpx.ReadTimeout)}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    posts=st.lists(st.sampled_from(sorted(_FAULTS)), max_size=8),
    lookups=st.lists(st.sampled_from(sorted(_LOOKUP_FAULTS)), max_size=4),
    attempts=st.integers(1, 4),
)
def test_any_failure_sequence_yields_exactly_one_record(
    posts: list[str], lookups: list[str], attempts: int
) -> None:
    """Calling again after every error (lookup_first after ambiguity) ends with one record."""
    asyncio.run(_drain(posts, lookups, attempts))


async def _drain(posts: list[str], lookups: list[str], attempts: int) -> None:
    table = Table()
    post_script = [_FAULTS[name] for name in posts]
    lookup_script = [_LOOKUP_FAULTS[name] for name in lookups]

    def post(request: httpx.Request) -> httpx.Response:
        step = post_script.pop(0) if post_script else None
        return (step or created)(request, table)

    def get(request: httpx.Request) -> httpx.Response:
        step = lookup_script.pop(0) if lookup_script else None
        return (step or lookup)(request, table)

    router = respx.MockRouter(assert_all_called=False)
    router.post(TABLE_URL).mock(side_effect=post)
    router.get(TABLE_URL).mock(side_effect=get)
    client = ServiceNowClient(
        BASE,
        auth=BasicAuth("u", "p"),
        transport=httpx.MockTransport(router.async_handler),
        clock=ManualClock(),
        create_attempts=attempts,
    )
    ambiguous = False
    async with client:
        for _ in range(len(posts) + len(lookups) + 2):
            try:
                result = await client.create_once(
                    TABLE, PAYLOAD, correlation=CALL, lookup_first=ambiguous
                )
            except AmbiguousError:
                ambiguous = True
                continue
            except TransientError:
                continue
            break
        else:
            raise AssertionError("never settled")
    assert table.count(*CALL) == 1
    assert result.sys_id == table.records[0]["sys_id"]
