"""The fake's Table API, in process: it answers like the documented ServiceNow Table API."""

from __future__ import annotations

import re

import httpx
import pytest

from callresilience.testing import FakeServiceNow, ManualClock

from ._helpers import BASE_URL

pytestmark = pytest.mark.anyio

HEX32 = re.compile(r"[0-9a-f]{32}")
ENVELOPE_HEADERS = ("x-transaction-id", "x-is-logged-in", "cache-control", "pragma", "expires")


async def create(
    client: httpx.AsyncClient, table: str, body: dict[str, object]
) -> dict[str, object]:
    response = await client.post(f"/api/now/table/{table}", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, object] = response.json()["result"]
    return result


async def test_post_answers_201_with_location_and_string_values(
    fake: FakeServiceNow, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    """POST creates a record: 201, Location, hex sys_id, clock timestamps, values as strings."""
    clock.advance(3661.0)
    response = await client.post(
        "/api/now/table/sn_openframe_phone_log",
        json={"call_id": "c-1", "duration": 42, "ratio": 1.5, "muted": False, "contact": None},
    )
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json;charset=UTF-8"
    result = response.json()["result"]
    sys_id = result["sys_id"]
    assert HEX32.fullmatch(sys_id)
    assert (
        response.headers["location"] == f"{BASE_URL}/api/now/table/sn_openframe_phone_log/{sys_id}"
    )
    assert result["duration"] == "42"
    assert result["ratio"] == "1.5"
    assert result["muted"] == "false"
    assert result["contact"] == ""
    assert result["sys_created_on"] == result["sys_updated_on"] == "2026-01-01 01:01:01"
    assert result["sys_mod_count"] == "0"
    assert fake.get("sn_openframe_phone_log", sys_id) == {k: str(v) for k, v in result.items()}


async def test_every_response_carries_servicenow_headers(client: httpx.AsyncClient) -> None:
    """Answers, errors included, carry X-Transaction-ID and the no-cache headers."""
    for response in (
        await client.get("/api/now/table/sys_user"),
        await client.get("/api/now/table/nope"),
    ):
        for name in ENVELOPE_HEADERS:
            assert name in response.headers
        assert response.headers["content-type"] == "application/json;charset=UTF-8"


async def test_reference_fields_come_back_as_link_and_value(
    fake: FakeServiceNow, client: httpx.AsyncClient
) -> None:
    """Reference and document-id fields are {link, value}; bare with exclude_reference_link."""
    agent = fake.records("sys_user")[0]["sys_id"]
    log = await create(client, "sn_openframe_phone_log", {"call_id": "c-2", "agent": agent})
    interaction = await create(
        client,
        "interaction",
        {
            "assigned_to": {"value": agent},
            "channel_metadata_table": "sn_openframe_phone_log",
            "channel_metadata_document": log["sys_id"],
            "opened_for": "",
        },
    )
    assert interaction["assigned_to"] == {
        "link": f"{BASE_URL}/api/now/table/sys_user/{agent}",
        "value": agent,
    }
    assert interaction["channel_metadata_document"] == {
        "link": f"{BASE_URL}/api/now/table/sn_openframe_phone_log/{log['sys_id']}",
        "value": log["sys_id"],
    }
    assert interaction["opened_for"] == ""
    assert str(interaction["number"]).startswith("IMS")
    bare = await client.get(
        f"/api/now/table/interaction/{interaction['sys_id']}",
        params={"sysparm_exclude_reference_link": "true"},
    )
    assert bare.json()["result"]["assigned_to"] == agent
    assert fake.records("interaction")[0]["assigned_to"] == agent


async def test_get_one_and_missing_record(fake: FakeServiceNow, client: httpx.AsyncClient) -> None:
    """GET by sys_id returns the record; an unknown sys_id is 404 with the real wording."""
    record = fake.insert("sys_user", {"user_name": "zed"})
    found = await client.get(f"/api/now/v2/table/sys_user/{record['sys_id']}")
    assert found.json()["result"]["user_name"] == "zed"
    missing = await client.get("/api/now/table/sys_user/" + "0" * 32)
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {
            "message": "No Record found",
            "detail": "Record doesn't exist or ACL restricts the record retrieval",
        },
        "status": "failure",
    }


@pytest.mark.parametrize("prefix", ["/api/now/table", "/api/now/v1/table"])
async def test_v1_and_unversioned_list_with_no_match_is_404(
    client: httpx.AsyncClient, prefix: str
) -> None:
    """GET v1 (and unversioned) with a query that matches nothing answers 404."""
    response = await client.get(f"{prefix}/sys_user", params={"sysparm_query": "user_name=nobody"})
    assert response.status_code == 404
    assert response.json() == {
        "error": {"message": "No Record found", "detail": "Records not found"},
        "status": "failure",
    }


async def test_v2_list_with_no_match_is_200_empty(client: httpx.AsyncClient) -> None:
    """GET v2 with a query that matches nothing answers 200 and an empty list."""
    response = await client.get(
        "/api/now/v2/table/sys_user", params={"sysparm_query": "user_name=nobody"}
    )
    assert response.status_code == 200
    assert response.json() == {"result": []}
    assert response.headers["x-total-count"] == "0"


async def test_list_of_an_empty_table_without_query_is_200(client: httpx.AsyncClient) -> None:
    """Listing an empty table with no query is not an error, even on v1."""
    response = await client.get("/api/now/v1/table/interaction")
    assert response.status_code == 200
    assert response.json() == {"result": []}


async def test_query_fields_limit_offset_and_total_count(
    fake: FakeServiceNow, client: httpx.AsyncClient
) -> None:
    """sysparm_query, _fields, _limit and _offset shape the page; X-Total-Count counts all."""
    for n in range(5):
        fake.insert("awa_work_item", {"n": n, "state": "queued" if n % 2 else "accepted"})
    response = await client.get(
        "/api/now/table/awa_work_item",
        params={
            "sysparm_query": "state=queued^ORstate=accepted^ORDERBYDESCn",
            "sysparm_fields": "n,bogus, state",
            "sysparm_limit": "2",
            "sysparm_offset": "1",
        },
    )
    assert response.json()["result"] == [
        {"n": "3", "state": "queued"},
        {"n": "2", "state": "accepted"},
    ]
    assert response.headers["x-total-count"] == "5"
    links = response.headers["link"]
    for rel, offset in (("first", 0), ("prev", 0), ("next", 3), ("last", 4)):
        assert re.search(rf"sysparm_offset={offset}&sysparm_limit=2>;rel=\"{rel}\"", links), rel
    bad_numbers = await client.get(
        "/api/now/table/awa_work_item",
        params={
            "sysparm_limit": "lots",
            "sysparm_offset": "-3",
            "sysparm_suppress_pagination_header": "true",
        },
    )
    assert len(bad_numbers.json()["result"]) == 5
    assert "link" not in bad_numbers.headers
    zero = await client.get("/api/now/v2/table/awa_work_item", params={"sysparm_limit": "0"})
    assert zero.json() == {"result": []}


async def test_name_value_pairs_filter_without_sysparm_query(
    fake: FakeServiceNow, client: httpx.AsyncClient
) -> None:
    """`&field=value` filters a list when there is no sysparm_query; unknown names are ignored."""
    response = await client.get(
        "/api/now/table/sys_user", params={"user_name": "beth.anglin", "x": "1"}
    )
    assert [r["user_name"] for r in response.json()["result"]] == ["beth.anglin"]
    both = await client.get(
        "/api/now/table/sys_user",
        params={"user_name": "beth.anglin", "sysparm_query": "user_name=david.loo"},
    )
    assert [r["user_name"] for r in both.json()["result"]] == ["david.loo"]


async def test_invalid_query_parts_widen_the_result(client: httpx.AsyncClient) -> None:
    """A condition on a field the table lacks is ignored, as on a real instance."""
    response = await client.get("/api/now/table/sys_user", params={"sysparm_query": "no_such=1"})
    assert response.headers["x-total-count"] == "3"


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
async def test_patch_and_put_update_fields(
    client: httpx.AsyncClient, clock: ManualClock, method: str
) -> None:
    """PATCH and PUT change the given fields, bump sys_mod_count and sys_updated_on."""
    record = await create(client, "interaction", {"state": "new", "type": "phone"})
    clock.advance(60)
    response = await client.request(
        method,
        f"/api/now/table/interaction/{record['sys_id']}",
        json={"state": "closed_complete", "sys_id": "f" * 32, "sys_created_on": "x"},
    )
    assert response.status_code == 200
    result = response.json()["result"]
    assert (result["state"], result["type"]) == ("closed_complete", "phone")
    assert result["sys_id"] == record["sys_id"]
    assert result["sys_mod_count"] == "1"
    assert result["sys_created_on"] == "2026-01-01 00:00:00"
    assert result["sys_updated_on"] == "2026-01-01 00:01:00"


async def test_update_or_delete_of_a_missing_record_is_404(client: httpx.AsyncClient) -> None:
    """PATCH and DELETE on an unknown sys_id answer 404."""
    path = "/api/now/table/interaction/" + "a" * 32
    assert (await client.patch(path, json={"state": "new"})).status_code == 404
    assert (await client.delete(path)).status_code == 404


async def test_delete_answers_204(fake: FakeServiceNow, client: httpx.AsyncClient) -> None:
    """DELETE removes the record and answers 204 with no body."""
    record = await create(client, "interaction", {"state": "new"})
    response = await client.delete(f"/api/now/table/interaction/{record['sys_id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert fake.records("interaction") == []


async def test_unknown_table_is_400_invalid_table(client: httpx.AsyncClient) -> None:
    """A table that does not exist answers 400 "Invalid table"."""
    for path in ("/api/now/table/u_nope", "/api/now/table/Bad-Name"):
        response = await client.get(path)
        assert response.status_code == 400
        name = path.rsplit("/", 1)[1]
        assert response.json()["error"] == {
            "message": f"Invalid table {name}",
            "detail": f"Table {name} does not exist",
        }


async def test_lenient_fake_creates_tables_on_demand(clock: ManualClock) -> None:
    """With strict_tables=False an unknown table is created on first use."""
    fake = FakeServiceNow(clock=clock, strict_tables=False)
    async with httpx.AsyncClient(transport=fake.transport(), base_url=BASE_URL) as client:
        response = await client.post("/api/now/table/u_custom", json={"a": 1})
    assert response.status_code == 201
    assert "u_custom" in fake.tables
    assert fake.insert("u_other", {"b": 2})["b"] == "2"


async def test_writes_need_json_accept_and_content_type(client: httpx.AsyncClient) -> None:
    """POST without Accept or Content-Type is 400; other media types are 406 and 415."""
    url = "/api/now/table/interaction"
    no_type = await client.post(url, content=b"{}", headers={"Accept": "application/json"})
    assert no_type.status_code == 400
    no_accept = httpx.Request(
        "POST", BASE_URL + url, content=b"{}", headers={"Content-Type": "application/json"}
    )
    assert (await client.send(no_accept)).status_code == 400
    html = await client.post(url, json={}, headers={"Accept": "text/html"})
    assert html.status_code == 406
    xml = await client.post(url, content=b"<a/>", headers={"Content-Type": "application/xml"})
    assert xml.status_code == 415
    assert all(e.get("status") == "failure" for e in (no_type.json(), html.json(), xml.json()))


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    """A body that is not a JSON object answers 400 and commits nothing."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    for body in (b"{not json", b"[1, 2]", b"\xff"):
        response = await client.post("/api/now/table/interaction", content=body, headers=headers)
        assert response.status_code == 400
        assert response.json()["error"]["message"] == "Exception while reading request"


async def test_no_response_body_header_suppresses_the_body(client: httpx.AsyncClient) -> None:
    """X-no-response-body: true leaves POST and PATCH answers empty."""
    response = await client.post(
        "/api/now/table/interaction", json={"a": 1}, headers={"X-no-response-body": "true"}
    )
    assert (response.status_code, response.content) == (201, b"")
    patched = await client.patch(
        response.headers["location"].removeprefix(BASE_URL),
        json={"a": 2},
        headers={"X-no-response-body": "true"},
    )
    assert (patched.status_code, patched.content) == (200, b"")


async def test_wrong_method_for_the_path_is_405(client: httpx.AsyncClient) -> None:
    """POST to a record, PATCH or DELETE to a table, and odd methods answer 405."""
    record = await create(client, "interaction", {})
    assert (
        await client.post(f"/api/now/table/interaction/{record['sys_id']}", json={})
    ).status_code == 405
    assert (await client.patch("/api/now/table/interaction", json={})).status_code == 405
    assert (await client.delete("/api/now/table/interaction")).status_code == 405
    assert (await client.request("OPTIONS", "/api/now/table/interaction")).status_code == 405
    assert (await client.get("/oauth_token.do")).status_code == 405


async def test_other_paths_are_not_part_of_the_api(client: httpx.AsyncClient) -> None:
    """A path outside the Table API and token endpoint answers 400."""
    response = await client.get("/api/now/import/thing")
    assert response.status_code == 400
    assert (
        response.json()["error"]["message"] == "The resource you requested is not part of the API."
    )


async def test_client_sys_id_is_ignored_unless_enabled(clock: ManualClock) -> None:
    """A sys_id in a POST body is replaced, unless accept_client_sys_id is set."""
    wanted = "c" * 32
    for accept, expected in ((False, False), (True, True)):
        fake = FakeServiceNow(clock=clock, accept_client_sys_id=accept)
        async with httpx.AsyncClient(transport=fake.transport(), base_url=BASE_URL) as client:
            record = await create(client, "interaction", {"sys_id": wanted})
        assert (record["sys_id"] == wanted) is expected


def test_seeded_tables_and_agents(fake: FakeServiceNow) -> None:
    """The adapter's tables exist and sys_user holds three active agents."""
    assert set(fake.tables) >= {
        "interaction",
        "sn_openframe_phone_log",
        "awa_work_item",
        "sys_user",
    }
    users = fake.records("sys_user")
    assert [u["user_name"] for u in users] == ["abel.tuter", "beth.anglin", "david.loo"]
    assert all(u["active"] == "true" and HEX32.fullmatch(u["sys_id"]) for u in users)


def test_same_seed_same_sys_ids(clock: ManualClock) -> None:
    """sys_ids come from the seed, so a run can be replayed."""
    first, second = FakeServiceNow(clock=clock, seed=5), FakeServiceNow(clock=clock, seed=5)
    assert first.records("sys_user") == second.records("sys_user")
    assert first.records("sys_user") != FakeServiceNow(clock=clock, seed=6).records("sys_user")


def test_table_accessors(fake: FakeServiceNow) -> None:
    """records(), get(), insert() and create_table() give direct access to the tables."""
    fake.create_table("u_queue", references={"owner": "sys_user"})
    fake.create_table("u_queue")
    row = fake.insert("u_queue", {"owner": "x"})
    assert fake.get("u_queue", row["sys_id"]) == row
    assert fake.get("u_queue", "missing") is None
    with pytest.raises(ValueError, match="invalid table name"):
        fake.create_table("Bad Name")
    with pytest.raises(KeyError):
        fake.records("u_missing")


async def test_request_log_records_every_request(
    fake: FakeServiceNow, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    """Each request is logged with method, path, query, status, time and whether it committed."""
    clock.advance(7)
    record = await create(client, "interaction", {"state": "new"})
    await client.get("/api/now/table/interaction", params={"sysparm_query": "state=new"})
    post, get = fake.requests
    assert (post.method, post.path, post.table, post.status) == (
        "POST",
        "/api/now/table/interaction",
        "interaction",
        201,
    )
    assert (post.sys_id, post.committed, post.outcome, post.at, post.fault) == (
        record["sys_id"],
        True,
        "answered",
        7.0,
        None,
    )
    assert get.params == {"sysparm_query": "state=new"}
    assert not get.committed
    fake.clear_requests()
    assert fake.requests == ()


def test_reference_fields_default_and_override(clock: ManualClock) -> None:
    """The default reference map is public, and a custom one replaces it per table."""
    assert FakeServiceNow.DEFAULT_REFERENCE_FIELDS["interaction"]["assigned_to"] == "sys_user"
    fake = FakeServiceNow(clock=clock, reference_fields={"interaction": {}})
    assert fake.reference_fields == {"interaction": {}}
