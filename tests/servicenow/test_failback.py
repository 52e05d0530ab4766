"""Failing back: probing one endpoint, choosing the endpoint in use, and hearing of changes."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import attrs
import httpx
import pytest

from callresilience import InvalidInput, PermanentError, TransientError
from callresilience.servicenow import OAuth2ClientCredentials, ServiceNowClient
from callresilience.servicenow._endpoints import Endpoints

from .conftest import envelope_error

pytestmark = pytest.mark.anyio

A = "https://a.example.com"
B = "https://b.example.com"
C = "https://c.example.com"
TABLE = "sn_openframe_phone_log"

Change = tuple[str, str, str]


@attrs.define
class Instance:
    """Answers every request with an empty result, except from the hosts marked down."""

    down: dict[str, type[httpx.RequestError]] = attrs.field(factory=dict)
    seen: list[str] = attrs.field(factory=list)
    status_code: int = 200

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.seen.append(host)
        if host in self.down:
            raise self.down[host]("unreachable", request=request)
        if request.url.path == "/oauth_token.do":
            return httpx.Response(200, json={"access_token": "T1", "expires_in": 1800})
        if self.status_code == 404:
            return httpx.Response(404, json=envelope_error("No Record Found"))
        return httpx.Response(self.status_code, json={"result": []})


@pytest.fixture
def instance() -> Instance:
    """The instance behind every URL, all of them up to start with."""
    return Instance()


@pytest.fixture
def changes() -> list[Change]:
    """What on_endpoint_change was called with, in order."""
    return []


@pytest.fixture
def client(
    make_client: Callable[..., ServiceNowClient], instance: Instance, changes: list[Change]
) -> ServiceNowClient:
    """A client on A then B then C that records its endpoint changes."""

    def record(old: str, new: str, reason: str) -> None:
        changes.append((old, new, reason))

    return make_client(
        base_url=[A, B, C],
        transport=httpx.MockTransport(instance),
        on_endpoint_change=record,
    )


# Probing one endpoint.


async def test_probe_of_an_endpoint_goes_there_only(
    client: ServiceNowClient, instance: Instance
) -> None:
    """probe(endpoint=url) asks that URL, not the one in use, and moves nothing."""
    async with client:
        assert await client.probe(endpoint=B) == 0.0
        assert instance.seen == ["b.example.com"]
        assert client.endpoint == A
        await client.query(TABLE)
    assert instance.seen == ["b.example.com", "a.example.com"]


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ConnectTimeout])
@pytest.mark.parametrize("current", [A, B])
async def test_a_failed_probe_of_an_endpoint_moves_nothing(
    client: ServiceNowClient,
    instance: Instance,
    changes: list[Change],
    error: type[httpx.RequestError],
    current: str,
) -> None:
    """A connect failure on a probed URL raises, is not retried, and moves nothing."""
    client.use_endpoint(current)
    changes.clear()
    instance.down = {"b.example.com": error}
    async with client:
        with pytest.raises(TransientError):
            await client.probe(endpoint=B)
        assert client.endpoint == current
    assert instance.seen == ["b.example.com"]
    assert changes == []


async def test_a_failed_probe_with_oauth_moves_nothing(
    make_client: Callable[..., ServiceNowClient], instance: Instance, changes: list[Change]
) -> None:
    """With OAuth2 and no token yet, a probe of an unreachable endpoint in use moves nothing."""
    instance.down = {"a.example.com": httpx.ConnectError}
    client = make_client(
        base_url=[A, B],
        auth=OAuth2ClientCredentials("probe-client", "secret-never-shown"),
        transport=httpx.MockTransport(instance),
        on_endpoint_change=lambda *change: changes.append(change),
    )
    async with client:
        with pytest.raises(TransientError):
            await client.probe(endpoint=A)
        assert (client.endpoint, changes) == (A, [])


async def test_probe_of_an_endpoint_reads_no_record_found_as_healthy(
    client: ServiceNowClient, instance: Instance
) -> None:
    """A 404 "No Record Found" (an empty probe table on older APIs) is an answer: healthy."""
    instance.status_code = 404
    async with client:
        assert await client.probe(endpoint=C) == 0.0
        assert await client.probe() == 0.0
    assert instance.seen == ["c.example.com", "a.example.com"]


async def test_probe_of_an_endpoint_raises_other_refusals(
    client: ServiceNowClient, instance: Instance
) -> None:
    """A refusal other than "No Record Found" is raised as from any read."""
    instance.status_code = 403
    async with client:
        with pytest.raises(PermanentError):
            await client.probe(endpoint=B)


async def test_probe_of_an_unknown_endpoint_is_refused(
    client: ServiceNowClient, instance: Instance
) -> None:
    """probe(endpoint=url) with a URL that is not one of the client's raises InvalidInput."""
    async with client:
        with pytest.raises(InvalidInput, match="not one of the client's base URLs") as caught:
            await client.probe(endpoint="https://elsewhere.example.com")
    assert caught.value.field == "endpoint"
    assert instance.seen == []


# Choosing the endpoint.


async def test_use_endpoint_switches_and_says_so(
    client: ServiceNowClient, instance: Instance, changes: list[Change]
) -> None:
    """use_endpoint() moves requests to the URL, returns whether it changed, and calls back."""
    async with client:
        assert client.use_endpoint(B, reason="failback test") is True
        assert client.endpoint == B
        await client.query(TABLE)
        assert client.use_endpoint(B, reason="again") is False
        assert client.use_endpoint(A) is True
    assert instance.seen == ["b.example.com"]
    assert changes == [(A, B, "failback test"), (B, A, "chosen")]


def test_use_endpoint_of_an_unknown_url_is_refused(
    client: ServiceNowClient, changes: list[Change]
) -> None:
    """use_endpoint() with a URL that is not one of the client's raises and moves nothing."""
    with pytest.raises(InvalidInput, match="url: not one of the client's base URLs"):
        client.use_endpoint("https://elsewhere.example.com")
    assert client.endpoint == A
    assert changes == []


@pytest.mark.parametrize(
    ("error", "seen"),
    [
        (httpx.ConnectError, ["a.example.com", "b.example.com"]),
        (httpx.ConnectTimeout, ["a.example.com", "b.example.com"]),
        (httpx.ReadTimeout, ["a.example.com"]),  # maybe sent: raised, not resent
    ],
)
async def test_a_failover_calls_back_with_the_error_type(
    client: ServiceNowClient,
    instance: Instance,
    changes: list[Change],
    error: type[httpx.RequestError],
    seen: list[str],
) -> None:
    """An automatic move calls on_endpoint_change(old, new, <exception type name>)."""
    instance.down = {"a.example.com": error}
    async with client:
        with contextlib.suppress(TransientError):
            await client.query(TABLE)
        assert client.endpoint == B
    assert instance.seen == seen
    assert changes == [(A, B, error.__name__)]


async def test_a_failing_callback_is_logged_and_breaks_nothing(
    make_client: Callable[..., ServiceNowClient],
    instance: Instance,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An on_endpoint_change that raises is logged; the request and the switch go on."""

    def broken(old: str, new: str, reason: str) -> None:
        raise RuntimeError("callback bug")

    instance.down = {"a.example.com": httpx.ConnectError}
    client = make_client(
        base_url=[A, B], transport=httpx.MockTransport(instance), on_endpoint_change=broken
    )
    with caplog.at_level(logging.ERROR, logger="callresilience.servicenow"):
        async with client:
            result = await client.query(TABLE)
            assert client.use_endpoint(A, reason="failback") is True
    assert len(result) == 0
    assert client.endpoint == A
    failures = [r for r in caplog.records if "on_endpoint_change" in r.getMessage()]
    assert len(failures) == 2
    assert all(r.exc_info is not None for r in failures)


def test_primary_is_the_first_url_whatever_is_in_use(
    client: ServiceNowClient, make_client: Callable[..., ServiceNowClient]
) -> None:
    """primary is the first base URL, before and after a switch; alone, the only one."""
    assert client.primary == A
    client.use_endpoint(C)
    assert (client.primary, client.endpoint) == (A, C)
    assert make_client(base_url=B).primary == B


def test_endpoints_use_switches_or_refuses() -> None:
    """Endpoints.use() says whether the URL changed; an unknown URL raises InvalidInput."""
    endpoints = Endpoints([A, B])
    assert endpoints.use(B) is True
    assert endpoints.use(B) is False
    assert endpoints.current == B
    with pytest.raises(InvalidInput) as caught:
        endpoints.use(C)
    assert caught.value.field == "url"
    assert endpoints.current == B


async def test_a_trailing_slash_names_the_same_endpoint(client: ServiceNowClient) -> None:
    """use_endpoint accepts a URL written with a trailing slash, as the constructor does."""
    async with client:
        second = client.endpoints[1]
        assert client.use_endpoint(second + "/") is True
        assert client.endpoint == second
