"""Fixtures for the ServiceNow client tests: a respx router as the transport, a manual clock.

`Table` is a few lines of stand-in for one Table API table (POST stores, GET answers
``field=value`` lookups), enough to count records in the exactly-once tests. The full
FakeServiceNow lives in `callresilience.testing` and is tested there.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import attrs
import httpx
import pytest
import respx

from callresilience.servicenow import BasicAuth, ServiceNowClient
from callresilience.testing import ManualClock

BASE = "https://example.service-now.com"
TABLE_URL = f"{BASE}/api/now/table/sn_openframe_phone_log"
PASSWORD = "pw-never-shown-7"


def envelope_error(message: str, detail: str | None = "") -> dict[str, Any]:
    """Return ServiceNow's error envelope."""
    return {"error": {"message": message, "detail": detail}, "status": "failure"}


@attrs.define
class Table:
    """One table's records; POST stores, GET answers a ``field=value`` lookup."""

    records: list[dict[str, Any]] = attrs.field(factory=list)
    posts: int = 0
    lookups: int = 0

    def store(self, request: httpx.Request) -> dict[str, Any]:
        """Store the posted record and return it as the instance would."""
        self.posts += 1
        record = {key: str(value) for key, value in json.loads(request.content).items()}
        record["sys_id"] = uuid.uuid4().hex
        self.records.append(record)
        return record

    def created(self, request: httpx.Request) -> httpx.Response:
        """Answer a POST: store and return 201."""
        return httpx.Response(201, json={"result": self.store(request)})

    def lookup(self, request: httpx.Request) -> httpx.Response:
        """Answer a GET with the records matching the first ``field=value`` condition."""
        self.lookups += 1
        query = parse_qs(request.url.query.decode()).get("sysparm_query", [""])[0]
        field, _, value = query.split("^")[0].partition("=")
        found = [r for r in self.records if r.get(field) == value]
        limit = int(parse_qs(request.url.query.decode()).get("sysparm_limit", ["10000"])[0])
        return httpx.Response(
            200, json={"result": found[:limit]}, headers={"X-Total-Count": str(len(found))}
        )

    def count(self, field: str, value: str) -> int:
        """Return how many records have `field` equal to `value`."""
        return sum(1 for r in self.records if r.get(field) == value)


@pytest.fixture
def clock() -> ManualClock:
    """A clock that moves only when the test says so."""
    return ManualClock()


@pytest.fixture
def router() -> respx.MockRouter:
    """A respx router, used as the client's transport (nothing is patched globally)."""
    return respx.MockRouter(base_url=BASE, assert_all_called=False)


@pytest.fixture
def make_client(router: respx.MockRouter, clock: ManualClock) -> Callable[..., ServiceNowClient]:
    """Return a factory for clients wired to the router and the manual clock."""

    def make(**options: Any) -> ServiceNowClient:
        options.setdefault("auth", BasicAuth("integration", PASSWORD))
        options.setdefault("transport", httpx.MockTransport(router.async_handler))
        options.setdefault("clock", clock)
        return ServiceNowClient(options.pop("base_url", BASE), **options)

    return make
