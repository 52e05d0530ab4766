"""The fake served over real loopback HTTP: the same API, and faults at the socket level."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator

import httpx
import pytest

from callresilience.testing import (
    BlackHole,
    DropResponse,
    FakeServiceNow,
    Hibernating,
    Latency,
    ManualClock,
    RateLimit,
    RefuseConnections,
    ServiceUnavailable,
)

from ._helpers import eventually, until

pytestmark = pytest.mark.anyio

TABLE = "/api/now/table/interaction"


@pytest.fixture
async def served(fake: FakeServiceNow) -> AsyncIterator[str]:
    """The fake, served on 127.0.0.1; yields its base URL."""
    async with fake.serve() as base_url:
        yield base_url


@pytest.fixture
async def http(served: str) -> AsyncIterator[httpx.AsyncClient]:
    """A real httpx client for the served fake."""
    async with httpx.AsyncClient(base_url=served) as client:
        yield client


async def test_serves_the_table_api_on_loopback(
    fake: FakeServiceNow, served: str, http: httpx.AsyncClient
) -> None:
    """serve() yields http://127.0.0.1:PORT and answers like the in-process transport."""
    assert served.startswith("http://127.0.0.1:")
    created = await http.post(TABLE, json={"state": "new"})
    assert created.status_code == 201
    sys_id = created.json()["result"]["sys_id"]
    assert created.headers["location"] == f"{served}/api/now/table/interaction/{sys_id}"
    assert created.headers["content-type"] == "application/json;charset=UTF-8"
    assert "x-transaction-id" in created.headers
    assert "server" not in created.headers
    empty = await http.get("/api/now/v1/table/interaction", params={"sysparm_query": "state=gone"})
    assert empty.status_code == 404
    assert fake.requests[-1].status == 404


async def test_refuse_closes_the_listener_and_reopens_it_on_the_same_port(
    fake: FakeServiceNow, served: str, http: httpx.AsyncClient, clock: ManualClock
) -> None:
    """During the outage a real client gets ConnectError; afterwards the same URL works."""
    fake.faults.add(RefuseConnections(), start=10, duration=20)
    assert (await http.get(TABLE)).status_code == 200
    clock.advance(10)
    await fake.settle()
    with pytest.raises(httpx.ConnectError):
        await http.get(TABLE)
    async with httpx.AsyncClient(base_url=served) as fresh:
        with pytest.raises(httpx.ConnectError):
            await fresh.post(TABLE, json={})
    clock.advance(20)
    await fake.settle()
    assert (await http.get(TABLE)).status_code == 200
    assert fake.records("interaction") == []


async def test_the_listener_follows_the_schedule_by_itself(
    fake: FakeServiceNow, served: str
) -> None:
    """Without settle(), adding and clearing a refusal closes and reopens the port promptly."""
    port = int(served.rsplit(":", 1)[1])

    def accepting() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    fake.faults.add(RefuseConnections())
    await eventually(lambda: not accepting())
    fake.faults.clear()
    await eventually(accepting)


async def test_a_filtered_refusal_closes_the_connection_without_an_answer(
    fake: FakeServiceNow, http: httpx.AsyncClient
) -> None:
    """A refusal scoped to POST cannot refuse TCP, so the request's connection is closed."""
    fake.faults.add(RefuseConnections(), methods={"POST"})
    assert (await http.get(TABLE)).status_code == 200
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post(TABLE, json={})
    assert fake.requests[-1].outcome == "refused"


async def test_black_hole_accepts_and_never_answers(
    fake: FakeServiceNow, http: httpx.AsyncClient
) -> None:
    """The request is received and held with no answer until released, then disconnected."""
    fake.faults.add(BlackHole())
    task = asyncio.ensure_future(http.post(TABLE, json={}, timeout=None))
    await eventually(lambda: len(fake.requests) == 1)
    assert fake.requests[0].outcome == "black_holed"
    await asyncio.sleep(0)
    assert not task.done()
    fake.release_black_holes()
    with pytest.raises(httpx.RemoteProtocolError):
        await task
    assert fake.records("interaction") == []


async def test_a_client_timeout_ends_a_black_hole(
    fake: FakeServiceNow, http: httpx.AsyncClient
) -> None:
    """A client that gives up on a black hole gets ReadTimeout; the server lets go."""
    fake.faults.add(BlackHole())
    with pytest.raises(httpx.ReadTimeout):
        await http.get(TABLE, timeout=0.05)


async def test_shutdown_with_a_black_hole_pending_is_clean(fake: FakeServiceNow) -> None:
    """Leaving serve() while a request is black-holed closes it and stops cleanly."""
    fake.faults.add(BlackHole())
    async with httpx.AsyncClient() as client:
        async with fake.serve() as base_url:
            task = asyncio.ensure_future(client.get(base_url + TABLE, timeout=None))
            await eventually(lambda: len(fake.requests) == 1)
        with pytest.raises(httpx.RemoteProtocolError):
            await task


async def test_drop_response_commits_and_closes_the_connection(
    fake: FakeServiceNow, http: httpx.AsyncClient
) -> None:
    """The record is written, and the client's connection closes with no response."""
    fake.faults.add(DropResponse(), methods={"POST"})
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post(TABLE, json={"call_id": "c-1"})
    assert len(fake.records("interaction")) == 1
    assert (fake.requests[-1].outcome, fake.requests[-1].committed) == ("dropped", True)
    assert (await http.get(TABLE)).json()["result"][0]["call_id"] == "c-1"


async def test_http_level_faults_keep_their_headers_and_bodies(
    fake: FakeServiceNow, http: httpx.AsyncClient, clock: ManualClock
) -> None:
    """503, the HTML hibernation page and 429 look the same over the wire."""
    outage = fake.faults.add(ServiceUnavailable(retry_after=5))
    unavailable = await http.get(TABLE)
    assert (unavailable.status_code, unavailable.headers["retry-after"]) == (503, "5")
    fake.faults.remove(outage)
    sleeping = fake.faults.add(Hibernating())
    page = await http.get(TABLE)
    assert page.headers["content-type"].startswith("text/html")
    fake.faults.remove(sleeping)
    fake.faults.add(RateLimit(1, per="second"))
    assert (await http.get(TABLE)).headers["x-ratelimit-limit"] == "1"
    limited = await http.get(TABLE)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "1"
    assert limited.json()["error"]["message"] == "Rate limit exceeded"


async def test_latency_holds_the_answer_until_the_clock_moves(
    fake: FakeServiceNow, http: httpx.AsyncClient, clock: ManualClock
) -> None:
    """Over HTTP, latency also waits on the fake's clock."""
    fake.faults.add(Latency(3.0))
    task = asyncio.ensure_future(http.get(TABLE))
    await eventually(lambda: clock.next_wakeup() is not None)
    assert not task.done()
    clock.advance(3.0)
    assert (await task).status_code == 200


async def test_refusing_from_the_start_binds_no_listener(clock: ManualClock) -> None:
    """A fake that starts inside an outage refuses its very first connection."""
    fake = FakeServiceNow(clock=clock)
    fake.faults.add(RefuseConnections(), duration=1)
    async with fake.serve() as base_url, httpx.AsyncClient(base_url=base_url) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(TABLE)
        clock.advance(1)
        await fake.settle()
        assert (await client.get(TABLE)).status_code == 200


async def test_serving_on_a_taken_port_fails_loudly(fake: FakeServiceNow, served: str) -> None:
    """A second server on the same port raises OSError instead of sharing it."""
    port = int(served.rsplit(":", 1)[1])
    with pytest.raises(OSError, match="in use"):
        async with FakeServiceNow().serve(port=port):
            pass  # pragma: no cover


async def test_serve_without_uvicorn_says_what_to_install(
    fake: FakeServiceNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without uvicorn, serve() raises a RuntimeError naming the `sim` extra."""
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(RuntimeError, match=r"callresilience\[sim\]"):
        async with fake.serve():
            pass  # pragma: no cover


async def test_reconcile_needs_a_started_server(fake: FakeServiceNow) -> None:
    """A server that was never started cannot follow the schedule."""
    from callresilience.testing._server import LoopbackServer

    with pytest.raises(RuntimeError, match="not been started"):
        await LoopbackServer(fake).reconcile()
    await until(lambda: True)
