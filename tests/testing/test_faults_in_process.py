"""Every fault, seen through the in-process httpx transport."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from callresilience.testing import (
    BlackHole,
    BrokenOk,
    DropResponse,
    FakeServiceNow,
    Hibernating,
    Latency,
    ManualClock,
    RateLimit,
    RefuseConnections,
    ServiceUnavailable,
    TransactionCancelled,
)

from ._helpers import BASE_URL, until

pytestmark = pytest.mark.anyio

TABLE = "/api/now/table/interaction"


async def test_refuse_raises_connect_error_only_during_the_outage(
    fake: FakeServiceNow, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    """An outage from t=10 for 20 s refuses connections inside the window only."""
    fake.faults.add(RefuseConnections(), start=10, duration=20)
    assert (await client.get(TABLE)).status_code == 200
    clock.advance(10)
    with pytest.raises(httpx.ConnectError):
        await client.post(TABLE, json={"a": 1})
    clock.advance(20)
    assert (await client.get(TABLE)).status_code == 200
    assert [r.outcome for r in fake.requests] == ["answered", "refused", "answered"]
    assert fake.requests[1].fault == "RefuseConnections"
    assert fake.records("interaction") == []


async def test_black_hole_waits_for_the_read_timeout_on_the_clock(
    fake: FakeServiceNow, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    """A black-holed request hangs until the client's read timeout passes on the fake's clock."""
    fake.faults.add(BlackHole())
    task = asyncio.ensure_future(client.get(TABLE, timeout=30.0))
    await until(lambda: clock.next_wakeup() == 30.0)
    assert fake.requests[0].outcome == "black_holed"
    clock.advance(29.0)
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(1.0)
    with pytest.raises(httpx.ReadTimeout):
        await task
    assert fake.requests[0].outcome == "black_holed"
    assert fake.requests[0].status is None


async def test_released_black_hole_closes_without_an_answer(
    fake: FakeServiceNow, client: httpx.AsyncClient
) -> None:
    """With no timeout a black hole holds until release_black_holes(), then disconnects."""
    fake.faults.add(BlackHole(), methods={"POST"})
    task = asyncio.ensure_future(client.post(TABLE, json={}, timeout=None))
    await until(lambda: len(fake.requests) == 1)
    assert (await client.get(TABLE)).status_code == 200
    fake.release_black_holes()
    with pytest.raises(httpx.RemoteProtocolError):
        await task
    assert fake.records("interaction") == []


async def test_service_unavailable_is_503_before_authentication(clock: ManualClock) -> None:
    """503 carries the failure envelope and Retry-After, even for unauthenticated requests."""
    fake = FakeServiceNow(clock=clock, user="u", password="p")
    fake.faults.add(ServiceUnavailable(retry_after=30))
    fake.faults.add(ServiceUnavailable(), tables={"sys_user"})
    async with httpx.AsyncClient(transport=fake.transport(), base_url=BASE_URL) as client:
        response = await client.get(TABLE)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "30"
    assert response.json()["status"] == "failure"
    assert fake.requests[0].fault == "ServiceUnavailable"


async def test_hibernating_instance_answers_200_html(
    fake: FakeServiceNow, client: httpx.AsyncClient
) -> None:
    """A hibernating instance answers 200 text/html, not JSON, and commits nothing."""
    fake.faults.add(Hibernating())
    response = await client.post(TABLE, json={"a": 1})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "Instance Hibernating page" in response.text
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert fake.records("interaction") == []


async def test_latency_delays_the_answer_on_the_clock() -> None:
    """A latency fault sleeps on the fake's clock before answering."""
    clock = ManualClock(autojump=True)
    fake = FakeServiceNow(clock=clock)
    fake.faults.add(Latency(2.5))
    async with httpx.AsyncClient(transport=fake.transport(), base_url=BASE_URL) as client:
        assert (await client.get(TABLE)).status_code == 200
    assert clock.now() == 2.5


async def test_latency_beyond_the_read_timeout_commits_later(
    fake: FakeServiceNow, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    """The client times out; the instance commits when the delay is over, so the record is late."""
    fake.faults.add(Latency(90.0), methods={"POST"})
    task = asyncio.ensure_future(client.post(TABLE, json={"call": "x"}, timeout=60.0))
    await until(lambda: clock.next_wakeup() is not None)
    clock.advance(60.0)
    with pytest.raises(httpx.ReadTimeout):
        await task
    assert fake.records("interaction") == []
    await until(lambda: clock.next_wakeup() is not None)
    clock.advance(30.0)
    await until(lambda: len(fake.records("interaction")) == 1)
    (logged,) = fake.requests
    assert (logged.outcome, logged.committed, logged.status) == ("timed_out", True, None)


async def test_closing_the_transport_cancels_pending_late_work(
    fake: FakeServiceNow, clock: ManualClock
) -> None:
    """A timed-out request still waiting when the client closes never commits."""
    fake.faults.add(Latency(90.0))
    async with httpx.AsyncClient(transport=fake.transport(), base_url=BASE_URL) as client:
        task = asyncio.ensure_future(client.post(TABLE, json={}, timeout=1.0))
        await until(lambda: clock.next_wakeup() is not None)
        clock.advance(1.0)
        with pytest.raises(httpx.ReadTimeout):
            await task
    clock.advance(100.0)
    await asyncio.sleep(0)
    assert fake.records("interaction") == []


async def test_rate_limit_answers_429_with_the_documented_body_and_headers(
    fake: FakeServiceNow, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    """After N requests per hour: 429, Retry-After, X-RateLimit-*; no X-RateLimit-Remaining."""
    rule = fake.faults.add(RateLimit(2), tables={"interaction"})
    allowed = [await client.get(TABLE) for _ in range(2)]
    for response in allowed:
        assert response.status_code == 200
        assert response.headers["x-ratelimit-limit"] == "2"
        assert "x-ratelimit-rule" in response.headers
        assert "x-ratelimit-remaining" not in response.headers
    clock.advance(600)
    denied = await client.post(TABLE, json={})
    assert denied.status_code == 429
    assert denied.json() == {
        "error": {
            "message": "Rate limit exceeded",
            "detail": "Rate limit of 2 requests per hour for Table API exceeded",
        },
        "status": "failure",
    }
    assert denied.headers["retry-after"] == "3000"
    assert denied.headers["x-ratelimit-reset"] == str(int(clock.epoch) + 3600)
    assert denied.headers["x-ratelimit-rule"] == rule.fault.rule_sys_id  # type: ignore[union-attr]
    assert "x-ratelimit-remaining" not in denied.headers
    assert fake.records("interaction") == []
    assert "x-ratelimit-limit" not in (await client.get("/api/now/table/sys_user")).headers
    clock.advance(3000)
    assert (await client.get(TABLE)).status_code == 200


async def test_rate_limit_counts_only_authenticated_requests(clock: ManualClock) -> None:
    """A 401 does not use up the quota."""
    fake = FakeServiceNow(clock=clock, user="u", password="p")
    fake.faults.add(RateLimit(1))
    async with httpx.AsyncClient(transport=fake.transport(), base_url=BASE_URL) as client:
        assert (await client.get(TABLE)).status_code == 401
        assert (await client.get(TABLE, auth=("u", "p"))).status_code == 200
        assert (await client.get(TABLE, auth=("u", "p"))).status_code == 429


async def test_drop_response_commits_then_resets(
    fake: FakeServiceNow, client: httpx.AsyncClient
) -> None:
    """The ambiguous case: the record exists, the client sees RemoteProtocolError."""
    fake.faults.add(DropResponse(), methods={"POST"})
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(TABLE, json={"call_id": "c-9"})
    (record,) = fake.records("interaction")
    logged = fake.requests[-1]
    assert (logged.outcome, logged.committed, logged.status) == ("dropped", True, None)
    assert logged.sys_id == record["sys_id"]
    lookup = await client.get(TABLE, params={"sysparm_query": "call_id=c-9"})
    assert lookup.json()["result"][0]["sys_id"] == record["sys_id"]


async def test_drop_response_without_commit(
    fake: FakeServiceNow, client: httpx.AsyncClient
) -> None:
    """DropResponse(commit=False) drops the connection before anything is written."""
    fake.faults.add(DropResponse(commit=False))
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(TABLE, json={})
    assert fake.records("interaction") == []
    assert not fake.requests[-1].committed


async def test_broken_ok_sends_truncated_json_and_an_error(
    fake: FakeServiceNow, client: httpx.AsyncClient
) -> None:
    """The broken 200 does not parse and names the cancelled transaction; the write committed."""
    fake.faults.add(BrokenOk())
    response = await client.post(TABLE, json={"a": "b"})
    assert response.status_code == 200
    assert response.text.startswith('{"result":')
    assert "Transaction cancelled: maximum execution time exceeded" in response.text
    assert response.text.endswith('"status":"failure"}')
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert len(fake.records("interaction")) == 1
    missing = await client.get(TABLE + "/" + "0" * 32)
    assert missing.status_code == 404
    assert missing.json()["status"] == "failure"
    assert fake.requests[-1].fault is None


@pytest.mark.parametrize("commit", [False, True])
async def test_transaction_cancelled_is_500(
    fake: FakeServiceNow, client: httpx.AsyncClient, commit: bool
) -> None:
    """500 "maximum execution time exceeded", with or without the insert committed first."""
    fake.faults.add(TransactionCancelled(commit=commit))
    response = await client.post(TABLE, json={})
    assert response.status_code == 500
    assert (
        response.json()["error"]["message"]
        == "Transaction cancelled: maximum execution time exceeded"
    )
    assert len(fake.records("interaction")) == int(commit)
    assert fake.requests[-1].committed is commit


async def test_seeded_probabilistic_faults_replay_identically(clock: ManualClock) -> None:
    """Two fakes with the same seed and script fail the same requests."""

    async def statuses(seed: int) -> list[int]:
        fake = FakeServiceNow(clock=clock, seed=seed)
        fake.faults.add(ServiceUnavailable(), probability=0.5, methods={"GET"})
        async with httpx.AsyncClient(transport=fake.transport(), base_url=BASE_URL) as client:
            return [(await client.get(TABLE)).status_code for _ in range(40)]

    first = await statuses(11)
    assert first == await statuses(11)
    assert {200, 503} == set(first)
