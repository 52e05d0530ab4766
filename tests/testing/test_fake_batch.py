"""The fake's Batch API: sub-requests answered one by one inside one HTTP exchange, with faults."""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from callresilience.testing import (
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
    decide,
)
from callresilience.testing._faults import ScheduledFault

from ._helpers import BASE_URL, until

pytestmark = pytest.mark.anyio

BATCH = "/api/now/v1/batch"
TABLE = "/api/now/table/interaction"
USERS = "/api/now/table/sys_user"
JSON_HEADERS = [
    {"name": "Content-Type", "value": "application/json"},
    {"name": "Accept", "value": "application/json"},
]


def item(
    ident: str,
    method: str,
    url: str,
    body: Mapping[str, object] | None = None,
    **extra: object,
) -> dict[str, object]:
    """One entry of `rest_requests`, its body JSON then base64, as a client sends it."""
    entry: dict[str, object] = {"id": ident, "method": method, "url": url, "headers": JSON_HEADERS}
    if body is not None:
        entry["body"] = base64.b64encode(json.dumps(body).encode()).decode()
    entry.update(extra)
    return entry


def batch(*items: dict[str, object], batch_id: str = "b-1") -> dict[str, object]:
    """A Batch API request body."""
    return {"batch_request_id": batch_id, "rest_requests": list(items)}


def served(response: httpx.Response) -> dict[str, dict[str, Any]]:
    """The serviced sub-responses by id, each with its body decoded from base64 to JSON."""
    assert response.status_code == 200, response.text
    out: dict[str, dict[str, Any]] = {}
    for entry in response.json()["serviced_requests"]:
        raw = base64.b64decode(entry["body"])
        out[entry["id"]] = {**entry, "body": json.loads(raw) if raw else None}
    return out


def header(entry: dict[str, Any], name: str) -> str | None:
    """A header of a sub-response, by case-insensitive name."""
    found = [h["value"] for h in entry["headers"] if h["name"].lower() == name.lower()]
    return found[0] if found else None


async def test_creates_and_patches_in_one_batch(
    fake: FakeServiceNow, client: httpx.AsyncClient
) -> None:
    """Each sub-request is answered in order with its own status, headers and base64 body."""
    existing = fake.insert("interaction", {"state": "new"})
    response = await client.post(
        BATCH,
        json=batch(
            item("c1", "POST", f"{TABLE}?sysparm_fields=sys_id,number", {"call_id": "c-1"}),
            item("p1", "PATCH", f"{TABLE}/{existing['sys_id']}", {"state": "closed"}),
            item("c2", "POST", TABLE, {"call_id": "c-2"}),
        ),
    )
    assert response.headers["content-type"] == "application/json;charset=UTF-8"
    assert response.json()["batch_request_id"] == "b-1"
    assert response.json()["unserviced_requests"] == []
    assert [e["id"] for e in response.json()["serviced_requests"]] == ["c1", "p1", "c2"]
    answers = served(response)
    assert [(a["status_code"], a["status_text"]) for a in answers.values()] == [
        (201, "Created"),
        (200, "OK"),
        (201, "Created"),
    ]
    assert all(isinstance(a["execution_time"], int) for a in answers.values())
    first = answers["c1"]["body"]["result"]
    assert set(first) == {"sys_id", "number"}
    assert header(answers["c1"], "Location") == f"{BASE_URL}{TABLE}/{first['sys_id']}"
    assert answers["p1"]["body"]["result"]["state"] == "closed"
    assert answers["p1"]["body"]["result"]["sys_mod_count"] == "1"
    assert answers["c2"]["body"]["result"]["call_id"] == "c-2"
    records = fake.records("interaction")
    assert [r.get("call_id") for r in records] == [None, "c-1", "c-2"]
    assert records[0]["state"] == "closed"
    assert fake.get("interaction", first["sys_id"]) == records[1]


async def test_a_batch_writes_exactly_what_single_requests_would(clock: ManualClock) -> None:
    """Same sys_ids, timestamps and numbers as the same writes sent one by one, and after."""
    singles, batched = FakeServiceNow(clock=clock, seed=3), FakeServiceNow(clock=clock, seed=3)
    bodies = [{"call_id": f"c-{n}"} for n in range(3)]
    async with httpx.AsyncClient(transport=singles.transport(), base_url=BASE_URL) as one:
        for body in bodies:
            assert (await one.post(TABLE, json=body)).status_code == 201
        assert (await one.post(TABLE, json={"call_id": "after"})).status_code == 201
    async with httpx.AsyncClient(transport=batched.transport(), base_url=BASE_URL) as many:
        items = [item(f"i{n}", "POST", TABLE, body) for n, body in enumerate(bodies)]
        answers = served(await many.post(BATCH, json=batch(*items)))
        assert [a["status_code"] for a in answers.values()] == [201, 201, 201]
        assert (await many.post(TABLE, json={"call_id": "after"})).status_code == 201
    assert batched.records("interaction") == singles.records("interaction")
    assert [r["number"] for r in batched.records("interaction")] == [
        "IMS0000001",
        "IMS0000002",
        "IMS0000003",
        "IMS0000004",
    ]


async def test_sub_requests_succeed_and_fail_alone(
    fake: FakeServiceNow, client: httpx.AsyncClient
) -> None:
    """Not atomic: a missing table, an unknown resource or a missing record fail on their own."""
    missing = "0" * 32
    response = await client.post(
        "/api/now/batch",
        json=batch(
            item("ok1", "POST", TABLE, {"call_id": "a"}),
            item("bad_table", "POST", "/api/now/table/no_such_table", {"x": 1}),
            item("nested", "POST", BATCH, {"x": 1}),
            item("other_api", "GET", "/api/now/stats/interaction"),
            item("gone", "PATCH", f"{TABLE}/{missing}", {"x": 1}),
            item("ok2", "POST", TABLE, {"call_id": "b"}),
        ),
    )
    answers = served(response)
    statuses = {ident: a["status_code"] for ident, a in answers.items()}
    assert statuses == {
        "ok1": 201,
        "bad_table": 400,
        "nested": 400,
        "other_api": 400,
        "gone": 404,
        "ok2": 201,
    }
    assert answers["bad_table"]["body"]["error"]["message"] == "Invalid table no_such_table"
    unknown = "The resource you requested is not part of the API."
    assert answers["nested"]["body"]["error"]["message"] == unknown
    assert answers["other_api"]["body"]["error"]["message"] == unknown
    assert [r["call_id"] for r in fake.records("interaction")] == ["a", "b"]
    subs = [r for r in fake.requests if r.batch_id is not None]
    assert [r.committed for r in subs] == [True, False, False, False, False, True]
    assert fake.requests[-1].committed is True


async def test_an_unauthenticated_batch_runs_nothing(clock: ManualClock) -> None:
    """401 for the batch as for any request; sub-requests use the batch's credentials only."""
    fake = FakeServiceNow(clock=clock, user="u", password="p")
    body = batch(
        item(
            "c1",
            "POST",
            TABLE,
            {"call_id": "x"},
            headers=[*JSON_HEADERS, {"name": "Authorization", "value": "Basic dTpw"}],
        )
    )
    async with httpx.AsyncClient(transport=fake.transport(), base_url=BASE_URL) as client:
        denied = await client.post(BATCH, json=body)
        assert denied.status_code == 401
        assert denied.json()["error"]["message"] == "User Not Authenticated"
        assert fake.records("interaction") == []
        assert [(r.path, r.status, r.batch_id) for r in fake.requests] == [(BATCH, 401, None)]
        wrong = await client.post(BATCH, json=body, auth=("u", "wrong"))
        assert wrong.status_code == 401
        assert fake.records("interaction") == []
        allowed = await client.post(BATCH, json=body, auth=("u", "p"))
    assert served(allowed)["c1"]["status_code"] == 201
    (record,) = fake.records("interaction")
    assert record["sys_created_by"] == "u"


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b"not json", "The payload is not valid JSON."),
        (b'["a list"]', "The payload is not valid JSON."),
        (b'{"batch_request_id": "b"}', "rest_requests must be a list"),
        (b'{"batch_request_id": "b", "rest_requests": {}}', "rest_requests must be a list"),
        ([{"method": "GET", "url": TABLE}], "rest_requests[1]: id, method and url must be"),
        ([{"id": "x", "method": 1, "url": TABLE}], "rest_requests[1]: id, method and url must be"),
        ([{"id": "x", "method": "GET"}], "rest_requests[1]: id, method and url must be"),
        ([{"id": "x", "method": "POST", "url": TABLE, "body": "@@@"}], "not valid base64"),
        ([{"id": "x", "method": "GET", "url": TABLE, "headers": {}}], "headers must be a list"),
        ([{"id": "x", "method": "POST", "url": TABLE, "body": 12}], "body must be a base64 string"),
        ([{"id": "c1", "method": "GET", "url": TABLE}], "id 'c1' is repeated"),
    ],
)
async def test_a_malformed_batch_is_400_and_runs_nothing(
    fake: FakeServiceNow,
    client: httpx.AsyncClient,
    content: bytes | list[dict[str, object]],
    detail: str,
) -> None:
    """A batch that cannot be read is refused whole, even its well-formed first item."""
    if isinstance(content, list):
        good = item("c1", "POST", TABLE, {"call_id": "never"})
        content = json.dumps(batch(good, *content)).encode()
    response = await client.post(
        BATCH, content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["status"] == "failure"
    assert detail in response.json()["error"]["detail"]
    assert fake.records("interaction") == []
    assert [(r.status, r.committed) for r in fake.requests] == [(400, False)]


async def test_a_batch_that_is_not_sent_as_json_is_refused(
    fake: FakeServiceNow, client: httpx.AsyncClient
) -> None:
    """The batch request needs JSON Accept and Content-Type, as a Table API write does."""
    body = json.dumps(batch(item("a", "POST", TABLE, {"call_id": "a"}))).encode()
    plain = await client.post(BATCH, content=body, headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415
    untyped = await client.post(BATCH, content=body)
    assert untyped.status_code == 400
    assert untyped.json()["error"]["detail"] == "Both Accept and Content-Type headers are required"
    assert fake.records("interaction") == []
    assert [r.committed for r in fake.requests] == [False, False]


async def test_other_methods_on_the_batch_path_are_405(
    fake: FakeServiceNow, client: httpx.AsyncClient
) -> None:
    """Only POST is served on the batch path."""
    for method in ("GET", "PUT", "DELETE"):
        response = await client.request(method, BATCH)
        assert response.status_code == 405
        assert response.json()["error"]["message"] == "Method not Supported"
    assert [r.status for r in fake.requests] == [405, 405, 405]


async def test_batch_limit_leaves_the_rest_unserviced(clock: ManualClock) -> None:
    """Beyond `batch_limit` nothing runs; those ids come back in `unserviced_requests`."""
    fake = FakeServiceNow(clock=clock, batch_limit=2)
    body = batch(*(item(i, "POST", TABLE, {"call_id": i}) for i in ("a", "b", "c", "d")))
    async with httpx.AsyncClient(transport=fake.transport(), base_url=BASE_URL) as client:
        response = await client.post(BATCH, json=body)
    assert list(served(response)) == ["a", "b"]
    assert response.json()["unserviced_requests"] == ["c", "d"]
    assert [r["call_id"] for r in fake.records("interaction")] == ["a", "b"]
    assert [r.batch_id for r in fake.requests] == ["b-1", "b-1", None]


async def test_the_rate_limit_counts_each_sub_request(
    fake: FakeServiceNow, client: httpx.AsyncClient
) -> None:
    """A sub-request over the limit is answered 429 inside an otherwise good batch."""
    fake.faults.add(RateLimit(2), tables={"interaction"})
    body = batch(*(item(i, "POST", TABLE, {"call_id": i}) for i in ("a", "b", "c")))
    answers = served(await client.post(BATCH, json=body))
    assert [a["status_code"] for a in answers.values()] == [201, 201, 429]
    denied = answers["c"]
    assert denied["status_text"] == "Too Many Requests"
    assert denied["body"]["error"]["message"] == "Rate limit exceeded"
    assert header(denied, "Retry-After") is not None
    assert header(answers["a"], "X-RateLimit-Limit") == "2"
    assert [r["call_id"] for r in fake.records("interaction")] == ["a", "b"]
    assert (await client.get(TABLE)).status_code == 429


async def test_exclude_response_headers_empties_that_sub_response_headers_only(
    client: httpx.AsyncClient,
) -> None:
    """`exclude_response_headers: true` answers `headers: []` for that sub-request."""
    answers = served(
        await client.post(
            BATCH,
            json=batch(
                item("bare", "POST", TABLE, {"call_id": "a"}, exclude_response_headers=True),
                item("full", "POST", TABLE, {"call_id": "b"}, exclude_response_headers=False),
            ),
        )
    )
    assert answers["bare"]["headers"] == []
    assert answers["bare"]["body"]["result"]["call_id"] == "a"
    assert header(answers["full"], "Content-Type") == "application/json;charset=UTF-8"
    assert header(answers["full"], "Location") is not None


async def test_each_sub_request_is_logged_with_the_batch_id(
    fake: FakeServiceNow, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    """Sub-requests are logged in order, then the batch request itself."""
    clock.advance(5.0)
    existing = fake.insert("interaction", {"state": "new"})["sys_id"]
    answers = served(
        await client.post(
            BATCH,
            json=batch(
                item("c", "POST", f"{TABLE}?sysparm_fields=sys_id", {"call_id": "a"}),
                item("g", "GET", f"{USERS}?sysparm_limit=1"),
                item("p", "PATCH", f"{TABLE}/{existing}", {"state": "done"}),
                batch_id="batch-42",
            ),
        )
    )
    created = answers["c"]["body"]["result"]["sys_id"]
    logged = [
        (r.method, r.path, r.query, r.table, r.sys_id, r.status, r.committed, r.batch_id)
        for r in fake.requests
    ]
    assert logged == [
        ("POST", TABLE, "sysparm_fields=sys_id", "interaction", created, 201, True, "batch-42"),
        ("GET", USERS, "sysparm_limit=1", "sys_user", None, 200, False, "batch-42"),
        ("PATCH", f"{TABLE}/{existing}", "", "interaction", existing, 200, True, "batch-42"),
        ("POST", BATCH, "", None, None, 200, True, None),
    ]
    assert {r.at for r in fake.requests} == {5.0}
    assert {r.outcome for r in fake.requests} == {"answered"}


async def test_untargeted_drop_response_runs_the_batch_then_drops_the_answer(
    fake: FakeServiceNow, client: httpx.AsyncClient
) -> None:
    """The ambiguous case for a whole batch: the records exist, the client saw no answer."""
    fake.faults.add(DropResponse(), methods={"POST"})
    body = batch(item("a", "POST", TABLE, {"call_id": "a"}), item("b", "POST", TABLE, {}))
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(BATCH, json=body)
    assert len(fake.records("interaction")) == 2
    logged = [(r.outcome, r.status, r.committed, r.fault) for r in fake.requests]
    assert logged == [
        ("dropped", None, True, None),
        ("dropped", None, True, None),
        ("dropped", None, True, "DropResponse"),
    ]


async def test_untargeted_drop_without_commit_runs_nothing(
    fake: FakeServiceNow, client: httpx.AsyncClient
) -> None:
    """DropResponse(commit=False) drops the batch before any sub-request runs."""
    fake.faults.add(DropResponse(commit=False))
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(BATCH, json=batch(item("a", "POST", TABLE, {"call_id": "a"})))
    assert fake.records("interaction") == []
    assert [(r.path, r.outcome, r.committed) for r in fake.requests] == [(BATCH, "dropped", False)]


async def test_untargeted_refusal_refuses_the_batch(
    fake: FakeServiceNow, client: httpx.AsyncClient
) -> None:
    """A refused batch is a ConnectError; nothing runs and nothing is logged as committed."""
    fake.faults.add(RefuseConnections())
    with pytest.raises(httpx.ConnectError):
        await client.post(BATCH, json=batch(item("a", "POST", TABLE, {"call_id": "a"})))
    assert fake.records("interaction") == []
    assert [(r.path, r.outcome, r.committed, r.fault) for r in fake.requests] == [
        (BATCH, "refused", False, "RefuseConnections")
    ]


async def test_a_refusal_scoped_to_a_sub_request_table_refuses_the_whole_batch(
    fake: FakeServiceNow, client: httpx.AsyncClient
) -> None:
    """A connection fault on one sub-request's table stops the batch before anything runs."""
    fake.faults.add(RefuseConnections(), tables={"sn_openframe_phone_log"})
    interaction = item("a", "POST", TABLE, {"call_id": "a"})
    phone_log = item("b", "POST", "/api/now/table/sn_openframe_phone_log", {"call_id": "b"})
    with pytest.raises(httpx.ConnectError):
        await client.post(BATCH, json=batch(interaction, phone_log))
    assert fake.records("interaction") == []
    assert [r.outcome for r in fake.requests] == ["refused"]
    assert served(await client.post(BATCH, json=batch(interaction)))["a"]["status_code"] == 201
    assert len(fake.records("interaction")) == 1


async def test_a_table_scoped_503_answers_only_that_sub_request(
    fake: FakeServiceNow, client: httpx.AsyncClient
) -> None:
    """ServiceUnavailable on one table shapes that sub-response; the others commit."""
    fake.faults.add(ServiceUnavailable(retry_after=7), tables={"sn_openframe_phone_log"})
    answers = served(
        await client.post(
            BATCH,
            json=batch(
                item("a", "POST", TABLE, {"call_id": "a"}),
                item("b", "POST", "/api/now/table/sn_openframe_phone_log", {"call_id": "b"}),
                item("c", "POST", TABLE, {"call_id": "c"}),
            ),
        )
    )
    assert [a["status_code"] for a in answers.values()] == [201, 503, 201]
    assert answers["b"]["status_text"] == "Service Unavailable"
    assert header(answers["b"], "Retry-After") == "7"
    assert answers["b"]["body"]["status"] == "failure"
    assert len(fake.records("interaction")) == 2
    assert fake.records("sn_openframe_phone_log") == []
    assert [r.fault for r in fake.requests] == [None, "ServiceUnavailable", None, None]


async def test_an_untargeted_503_answers_the_whole_batch(
    fake: FakeServiceNow, client: httpx.AsyncClient
) -> None:
    """ServiceUnavailable for every request answers the batch 503; nothing runs."""
    fake.faults.add(ServiceUnavailable(retry_after=30))
    response = await client.post(BATCH, json=batch(item("a", "POST", TABLE, {"call_id": "a"})))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "30"
    assert fake.records("interaction") == []
    assert [(r.path, r.status, r.fault) for r in fake.requests] == [
        (BATCH, 503, "ServiceUnavailable")
    ]


async def test_untargeted_faults_are_decided_once_for_the_batch_only(
    fake: FakeServiceNow, client: httpx.AsyncClient
) -> None:
    """An unscoped fault for PATCH misses the batch (a POST) and is not decided per sub-request."""
    existing = fake.insert("interaction", {"state": "new"})["sys_id"]
    fake.faults.add(Hibernating(), methods={"PATCH"})
    answers = served(
        await client.post(
            BATCH, json=batch(item("p", "PATCH", f"{TABLE}/{existing}", {"state": "done"}))
        )
    )
    assert answers["p"]["status_code"] == 200
    assert fake.records("interaction")[0]["state"] == "done"
    assert (
        (await client.patch(f"{TABLE}/{existing}", json={}))
        .headers["content-type"]
        .startswith("text/html")
    )


def test_table_scoped_only_ignores_unscoped_faults_without_drawing() -> None:
    """`decide(table_scoped_only=True)` skips unscoped entries and leaves the rng alone."""
    unscoped = ScheduledFault(1, ServiceUnavailable(), 0.0, probability=0.5)
    scoped = ScheduledFault(2, TransactionCancelled(), 0.0, tables=["interaction"])
    rng = random.Random(1)
    state = rng.getstate()
    decision = decide(
        [unscoped, scoped],
        method="POST",
        table="interaction",
        now=0.0,
        rng=rng,
        table_scoped_only=True,
    )
    assert decision.instance is None
    assert decision.processing == TransactionCancelled()
    assert rng.getstate() == state
    assert decide([unscoped], method="POST", table="x", now=0.0, rng=rng).instance is not None


async def test_a_table_scoped_drop_drops_the_whole_answer_after_running_everything(
    fake: FakeServiceNow, client: httpx.AsyncClient
) -> None:
    """Every sub-request runs; the dropped one commits only with commit=True; no answer."""
    fake.faults.add(DropResponse(commit=False), tables={"sn_openframe_phone_log"})
    body = batch(
        item("a", "POST", TABLE, {"call_id": "a"}),
        item("b", "POST", "/api/now/table/sn_openframe_phone_log", {"call_id": "b"}),
        item("c", "POST", TABLE, {"call_id": "c"}),
    )
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(BATCH, json=body)
    assert [r["call_id"] for r in fake.records("interaction")] == ["a", "c"]
    assert fake.records("sn_openframe_phone_log") == []
    logged = [(r.outcome, r.committed, r.fault) for r in fake.requests]
    assert logged == [
        ("dropped", True, None),
        ("dropped", False, "DropResponse"),
        ("dropped", True, None),
        ("dropped", True, "DropResponse"),
    ]


@pytest.mark.parametrize("commit", [False, True])
async def test_untargeted_transaction_cancelled_answers_the_batch_500(
    fake: FakeServiceNow, client: httpx.AsyncClient, commit: bool
) -> None:
    """With commit=True the sub-requests ran before the 500; without, none did."""
    fake.faults.add(TransactionCancelled(commit=commit))
    response = await client.post(BATCH, json=batch(item("a", "POST", TABLE, {"call_id": "a"})))
    assert response.status_code == 500
    assert response.json()["error"]["message"].startswith("Transaction cancelled")
    assert len(fake.records("interaction")) == int(commit)
    assert fake.requests[-1].committed is commit


async def test_table_scoped_transaction_cancelled_shapes_one_sub_response(
    fake: FakeServiceNow, client: httpx.AsyncClient
) -> None:
    """The cancelled sub-request answers 500 inside a 200 batch; the rest are untouched."""
    fake.faults.add(TransactionCancelled(), tables={"sn_openframe_phone_log"})
    answers = served(
        await client.post(
            BATCH,
            json=batch(
                item("a", "POST", "/api/now/table/sn_openframe_phone_log", {"call_id": "a"}),
                item("b", "POST", TABLE, {"call_id": "b"}),
            ),
        )
    )
    assert [a["status_code"] for a in answers.values()] == [500, 201]
    assert answers["a"]["body"]["error"]["message"].startswith("Transaction cancelled")
    assert fake.records("sn_openframe_phone_log") == []
    assert len(fake.records("interaction")) == 1


async def test_untargeted_broken_ok_breaks_the_batch_answer(
    fake: FakeServiceNow, client: httpx.AsyncClient
) -> None:
    """The batch's 200 is cut and does not parse; its sub-requests committed."""
    fake.faults.add(BrokenOk())
    response = await client.post(BATCH, json=batch(item("a", "POST", TABLE, {"call_id": "a"})))
    assert response.status_code == 200
    assert "Transaction cancelled: maximum execution time exceeded" in response.text
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert len(fake.records("interaction")) == 1
    assert fake.requests[-1].fault == "BrokenOk"


async def test_table_scoped_latency_past_the_read_timeout_runs_the_batch_late(
    fake: FakeServiceNow, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    """Latency on a sub-request's table delays the whole batch; it commits after the timeout."""
    fake.faults.add(Latency(50.0), tables={"interaction"})
    body = batch(item("a", "POST", TABLE, {"call_id": "a"}), item("b", "POST", TABLE, {}))
    task = asyncio.ensure_future(client.post(BATCH, json=body, timeout=60.0))
    await until(lambda: clock.next_wakeup() == 60.0)  # 2 x 50 s, past the 60 s timeout
    clock.advance(60.0)
    with pytest.raises(httpx.ReadTimeout):
        await task
    assert fake.records("interaction") == []
    await until(lambda: clock.next_wakeup() is not None)
    clock.advance(40.0)
    await until(lambda: len(fake.records("interaction")) == 2)
    logged = [(r.outcome, r.committed, r.status, r.batch_id) for r in fake.requests]
    assert logged == [
        ("timed_out", True, None, "b-1"),
        ("timed_out", True, None, "b-1"),
        ("timed_out", True, None, None),
    ]


async def test_a_batch_over_loopback_http(fake: FakeServiceNow) -> None:
    """serve() answers the Batch API like the in-process transport, links on the served URL."""
    async with fake.serve() as base_url, httpx.AsyncClient(base_url=base_url) as http:
        response = await http.post(
            BATCH,
            json=batch(
                item("a", "POST", TABLE, {"call_id": "a"}),
                item("x", "POST", "/api/now/table/nope", {}),
            ),
        )
    answers = served(response)
    assert [a["status_code"] for a in answers.values()] == [201, 400]
    sys_id = answers["a"]["body"]["result"]["sys_id"]
    assert header(answers["a"], "Location") == f"{base_url}{TABLE}/{sys_id}"
    assert [r["call_id"] for r in fake.records("interaction")] == ["a"]
    assert [r.batch_id for r in fake.requests] == ["b-1", "b-1", None]
