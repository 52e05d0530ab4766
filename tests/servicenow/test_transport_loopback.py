"""Each transport, over real loopback HTTP, keeps the meaning of the fake's faults.

The FakeServiceNow is served on 127.0.0.1 in process (`fake.serve()`), on a `ManualClock` that
never moves, so each fault stays active until the test removes it. The only real waiting is a
read timeout of a fraction of a second against a black hole.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from callresilience import AmbiguousError, RateLimited, TransientError
from callresilience.servicenow import BasicAuth, ServiceNowClient, aiohttp_transport
from callresilience.testing import (
    BlackHole,
    DropResponse,
    FakeServiceNow,
    Hibernating,
    ManualClock,
    RefuseConnections,
    ServiceUnavailable,
)
from callresilience.testing import RateLimit as RateLimitRule

TABLE = "sn_openframe_phone_log"
USER, PASSWORD = "integration", "pw-loopback-3"
CALL_ID = "5b0c7d1e-9a2f-4e3b-8c6d-00aa11bb22cc"
PAYLOAD = {"phone_number": "+14155550100", "call_type": "inbound"}
SHORT_READ = 0.25  # seconds of real time: the only wall-clock wait in this module


@pytest.fixture(params=["default", "aiohttp"])
def transport(request: pytest.FixtureRequest) -> str:
    """Which transport the client uses: the default (transport= unset) or aiohttp's."""
    kind: str = request.param
    return kind


def _fake() -> FakeServiceNow:
    return FakeServiceNow(clock=ManualClock(), user=USER, password=PASSWORD, seed=3)


def _client(transport: str, base_url: str | Sequence[str], **options: Any) -> ServiceNowClient:
    if transport == "aiohttp":
        options["transport"] = aiohttp_transport()
    return ServiceNowClient(base_url, auth=BasicAuth(USER, PASSWORD), **options)


@contextlib.asynccontextmanager
async def _served(
    transport: str, fake: FakeServiceNow, **options: Any
) -> AsyncIterator[ServiceNowClient]:
    async with fake.serve() as base_url, _client(transport, base_url, **options) as client:
        yield client


def _records(fake: FakeServiceNow, call_id: str = CALL_ID) -> list[dict[str, str]]:
    return [r for r in fake.records(TABLE) if r.get("call_id") == call_id]


@pytest.mark.anyio
async def test_refused_connection_is_transient_and_nothing_is_sent(transport: str) -> None:
    """A refused connection is a TransientError, and no request reaches the instance."""
    fake = _fake()
    async with _served(transport, fake) as client:
        fake.faults.add(RefuseConnections())
        await fake.settle()
        with pytest.raises(TransientError) as caught:
            await client.create(TABLE, {"call_id": CALL_ID, **PAYLOAD})
        assert caught.value.status_code is None
        assert type(caught.value) is TransientError
    assert fake.requests == ()
    assert _records(fake) == []


@pytest.mark.anyio
async def test_refused_connection_fails_over_to_the_next_url(transport: str) -> None:
    """When the first URL refuses, the same create goes to the second URL at once."""
    down, up = _fake(), _fake()
    async with down.serve() as down_url, up.serve() as up_url:
        down.faults.add(RefuseConnections())
        await down.settle()
        async with _client(transport, [down_url, up_url]) as client:
            record = await client.create(TABLE, {"call_id": CALL_ID, **PAYLOAD})
            assert client.endpoint == up_url
    assert record["call_id"] == CALL_ID
    assert down.requests == ()
    assert len(_records(up)) == 1


@pytest.mark.anyio
async def test_black_hole_is_ambiguous_for_a_post_and_transient_for_a_get(transport: str) -> None:
    """No answer within the read timeout: a POST may have committed, a GET changed nothing."""
    fake = _fake()
    async with _served(transport, fake, read_timeout=SHORT_READ) as client:
        fake.faults.add(BlackHole())
        with pytest.raises(AmbiguousError) as posted:
            await client.create(TABLE, {"call_id": CALL_ID, **PAYLOAD})
        with pytest.raises(TransientError) as read:
            await client.query(TABLE)
    assert posted.value.status_code is None
    assert type(read.value) is TransientError
    assert read.value.status_code is None
    assert [r.outcome for r in fake.requests] == ["black_holed", "black_holed"]


@pytest.mark.anyio
async def test_dropped_response_is_ambiguous_then_create_once_adopts(transport: str) -> None:
    """A create whose answer is dropped after the commit is ambiguous; create_once adopts it."""
    fake = _fake()
    async with _served(transport, fake) as client:
        dropped = fake.faults.add(DropResponse(), methods={"POST"})
        with pytest.raises(AmbiguousError) as caught:
            await client.create(TABLE, {"call_id": CALL_ID, **PAYLOAD})
        assert caught.value.status_code is None
        assert len(_records(fake)) == 1
        fake.faults.remove(dropped)
        result = await client.create_once(
            TABLE, PAYLOAD, correlation=("call_id", CALL_ID), lookup_first=True
        )
    assert (result.created, result.attempts) == (False, 0)
    (record,) = _records(fake)
    assert result.sys_id == record["sys_id"]


@pytest.mark.anyio
async def test_create_once_adopts_the_record_its_own_dropped_post_wrote(transport: str) -> None:
    """Within one create_once call, a dropped POST is looked up and adopted, not repeated."""
    fake = _fake()
    async with _served(transport, fake) as client:
        fake.faults.add(DropResponse(), methods={"POST"})
        result = await client.create_once(TABLE, PAYLOAD, correlation=("call_id", CALL_ID))
    assert (result.created, result.attempts) == (False, 1)
    (record,) = _records(fake)
    assert result.sys_id == record["sys_id"]
    assert [r.committed for r in fake.requests if r.method == "POST"] == [True]


@pytest.mark.anyio
async def test_503_is_ambiguous_for_a_post_and_transient_for_a_get(transport: str) -> None:
    """A 503 is a TransientError for a read and an AmbiguousError for a write, with Retry-After."""
    fake = _fake()
    async with _served(transport, fake) as client:
        fake.faults.add(ServiceUnavailable(retry_after=7))
        with pytest.raises(AmbiguousError) as posted:
            await client.create(TABLE, {"call_id": CALL_ID, **PAYLOAD})
        with pytest.raises(TransientError) as read:
            await client.query(TABLE)
    for error in (posted.value, read.value):
        assert (error.status_code, error.retry_after) == (503, 7.0)
    assert type(read.value) is TransientError
    assert _records(fake) == []


@pytest.mark.anyio
async def test_429_is_rate_limited_with_retry_after(transport: str) -> None:
    """Over the hourly limit, a create is RateLimited with Retry-After and the rate limit."""
    fake = _fake()
    async with _served(transport, fake) as client:
        fake.faults.add(RateLimitRule(1))
        await client.create(TABLE, {"call_id": CALL_ID, **PAYLOAD})
        with pytest.raises(RateLimited) as caught:
            await client.create(TABLE, {"call_id": "second-call", **PAYLOAD})
    error = caught.value
    assert error.status_code == 429
    assert error.retry_after is not None
    assert 0 < error.retry_after <= 3600
    assert error.rate_limit is not None
    assert error.rate_limit.limit == 1
    assert len(_records(fake)) == 1
    assert _records(fake, "second-call") == []


@pytest.mark.anyio
async def test_hibernation_page_is_transient_for_a_read(transport: str) -> None:
    """The HTML 'Instance Hibernating' page is a TransientError for a read (a write: ambiguous)."""
    fake = _fake()
    async with _served(transport, fake) as client:
        fake.faults.add(Hibernating())
        with pytest.raises(TransientError) as read:
            await client.query(TABLE)
        with pytest.raises(AmbiguousError) as posted:
            await client.create(TABLE, {"call_id": CALL_ID, **PAYLOAD})
    assert type(read.value) is TransientError
    assert "hibernating" in str(read.value)
    assert (read.value.status_code, posted.value.status_code) == (200, 200)
    assert _records(fake) == []
