"""Authentication: header forms, OAuth2 grants, early refresh, single flight, one re-auth on 401."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from callresilience import (
    AuthenticationError,
    InvalidInput,
    PermanentError,
    RateLimited,
    TransientError,
)
from callresilience.servicenow import (
    ApiKey,
    BasicAuth,
    BearerToken,
    OAuth2ClientCredentials,
    OAuth2Password,
    OAuth2RefreshToken,
    ServiceNowClient,
)
from callresilience.testing import ManualClock

from .conftest import BASE, PASSWORD, TABLE_URL, envelope_error

TABLE = "sn_openframe_phone_log"
SECRET = "client-secret-never-shown"
USER_PASSWORD = "user-password-never-shown"
REFRESH = "refresh-token-never-shown"
UNAUTHORIZED = envelope_error("User Not Authenticated", "Required to provide Auth information")


def token_body(token: str, *, expires_in: Any = 1800, refresh: str | None = None) -> dict[str, Any]:
    """Return a ServiceNow /oauth_token.do answer."""
    body: dict[str, Any] = {"access_token": token, "scope": "useraccount", "token_type": "Bearer"}
    if expires_in is not None:
        body["expires_in"] = expires_in
    if refresh is not None:
        body["refresh_token"] = refresh
    return body


def oauth_client(handler: Callable[[httpx.Request], Any], clock: ManualClock) -> ServiceNowClient:
    """A client with the client-credentials grant, answered by `handler`."""
    return ServiceNowClient(
        BASE,
        auth=OAuth2ClientCredentials("c", SECRET),
        transport=httpx.MockTransport(handler),
        clock=clock,
    )


def form(request: httpx.Request) -> dict[str, str]:
    """Return a form-encoded request body as a dict."""
    return {key: values[0] for key, values in parse_qs(request.content.decode()).items()}


def ok(request: httpx.Request) -> httpx.Response:
    """Answer a table read with no records."""
    return httpx.Response(200, json={"result": []})


def bearer(token: str) -> Callable[[httpx.Request], httpx.Response]:
    """Answer 200 when the request carries `token`, 401 otherwise."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") == f"Bearer {token}":
            return httpx.Response(200, json={"result": []})
        return httpx.Response(401, json=UNAUTHORIZED)

    return answer


@pytest.mark.anyio
async def test_basic_auth_header(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """Basic auth sends the user name and password as an Authorization: Basic header."""
    route = router.get(url__startswith=TABLE_URL).mock(side_effect=ok)
    async with make_client() as client:
        await client.query(TABLE)
    expected = base64.b64encode(f"integration:{PASSWORD}".encode()).decode()
    assert route.calls.last.request.headers["Authorization"] == f"Basic {expected}"


@pytest.mark.anyio
async def test_bearer_token_header_and_no_renewal(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """A static bearer token is sent as is; a 401 raises at once (it cannot be renewed)."""
    route = router.get(url__startswith=TABLE_URL).respond(401, json=UNAUTHORIZED)
    async with make_client(auth=BearerToken("static-token")) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.query(TABLE)
    assert route.call_count == 1
    assert route.calls.last.request.headers["Authorization"] == "Bearer static-token"
    assert caught.value.sn_message == "User Not Authenticated"
    assert caught.value.sn_detail == "Required to provide Auth information"


@pytest.mark.anyio
async def test_api_key_header(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """An API key goes in the x-sn-apikey header, and no Authorization header is sent."""
    route = router.get(url__startswith=TABLE_URL).mock(side_effect=ok)
    async with make_client(auth=ApiKey("key-never-shown")) as client:
        await client.query(TABLE)
    headers = route.calls.last.request.headers
    assert headers["x-sn-apikey"] == "key-never-shown"
    assert "Authorization" not in headers


@pytest.mark.anyio
async def test_client_credentials_grant(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """Client credentials are POSTed form-encoded to /oauth_token.do; the token is a Bearer."""
    token = router.post("/oauth_token.do").respond(200, json=token_body("T1"))
    table = router.get(url__startswith=TABLE_URL).mock(side_effect=bearer("T1"))
    auth = OAuth2ClientCredentials("my-client", SECRET, scope="useraccount")
    async with make_client(auth=auth) as client:
        await client.query(TABLE)
        await client.query(TABLE)
    request = token.calls.last.request
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form(request) == {
        "grant_type": "client_credentials",
        "client_id": "my-client",
        "client_secret": SECRET,
        "scope": "useraccount",
    }
    assert token.call_count == 1
    assert table.call_count == 2


@pytest.mark.anyio
async def test_password_grant_then_refresh_token_ahead_of_expiry(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient], clock: ManualClock
) -> None:
    """The password grant's refresh token renews the access token 60 s before it expires."""
    token = router.post("/oauth_token.do")
    token.side_effect = [
        httpx.Response(200, json=token_body("T1", refresh="R1")),
        httpx.Response(200, json=token_body("T2", refresh="R2")),
    ]
    router.get(url__startswith=TABLE_URL).mock(side_effect=ok)
    auth = OAuth2Password("my-client", SECRET, "integration", USER_PASSWORD)
    async with make_client(auth=auth) as client:
        await client.query(TABLE)
        clock.advance(1739)  # 61 s left: still fresh
        await client.query(TABLE)
        assert token.call_count == 1
        clock.advance(2)  # 59 s left: renewed before use
        await client.query(TABLE)
    assert token.call_count == 2
    first, second = (form(call.request) for call in token.calls)
    assert first == {
        "grant_type": "password",
        "client_id": "my-client",
        "client_secret": SECRET,
        "username": "integration",
        "password": USER_PASSWORD,
    }
    assert second == {
        "grant_type": "refresh_token",
        "client_id": "my-client",
        "client_secret": SECRET,
        "refresh_token": "R1",
    }


@pytest.mark.anyio
async def test_refused_refresh_token_falls_back_to_the_password_grant(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """When the refresh token is refused, the password grant is used again."""
    token = router.post("/oauth_token.do")
    token.side_effect = [
        httpx.Response(200, json=token_body("T1", refresh="R1")),
        httpx.Response(401, json={"error": "access_denied", "error_description": "expired"}),
        httpx.Response(200, json=token_body("T3")),
    ]
    table = router.get(url__startswith=TABLE_URL).mock(side_effect=bearer("T3"))
    auth = OAuth2Password("my-client", SECRET, "integration", USER_PASSWORD)
    async with make_client(auth=auth) as client:
        await client.query(TABLE)  # T1 refused; R1 refused; the password grant gives T3
    grants = [form(call.request)["grant_type"] for call in token.calls]
    assert grants == ["password", "refresh_token", "password"]
    assert table.calls.last.response.status_code == 200


@pytest.mark.anyio
async def test_refresh_token_grant_uses_the_rotated_token(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient], clock: ManualClock
) -> None:
    """A refresh-token setting sends its token, then whichever new one the instance returns."""
    token = router.post("/oauth_token.do")
    token.side_effect = [
        httpx.Response(200, json=token_body("T1", expires_in="100", refresh="R2")),
        httpx.Response(200, json=token_body("T2", expires_in=100)),
    ]
    router.get(url__startswith=TABLE_URL).mock(side_effect=ok)
    async with make_client(
        auth=OAuth2RefreshToken("my-client", SECRET, REFRESH, refresh_margin=timedelta(seconds=10))
    ) as client:
        await client.query(TABLE)
        clock.advance(91)
        await client.query(TABLE)
    assert [form(call.request)["refresh_token"] for call in token.calls] == [REFRESH, "R2"]


@pytest.mark.anyio
async def test_refused_refresh_token_setting_raises(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """With only a refresh token to go on, its refusal is an AuthenticationError."""
    router.post("/oauth_token.do").respond(
        400, json={"error": "invalid_grant", "error_description": "refresh token expired"}
    )
    async with make_client(auth=OAuth2RefreshToken("c", SECRET, REFRESH)) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.query(TABLE)
    assert caught.value.status_code == 400
    assert caught.value.sn_message == "invalid_grant"
    assert "refresh_token grant" in str(caught.value)


@pytest.mark.anyio
async def test_token_without_expiry_is_kept_until_refused(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient], clock: ManualClock
) -> None:
    """A token answer without expires_in is used until a 401 says otherwise."""
    token = router.post("/oauth_token.do").respond(200, json=token_body("T1", expires_in=None))
    router.get(url__startswith=TABLE_URL).mock(side_effect=ok)
    async with make_client(auth=OAuth2ClientCredentials("c", SECRET)) as client:
        await client.query(TABLE)
        clock.advance(86400)
        await client.query(TABLE)
    assert token.call_count == 1


@pytest.mark.anyio
async def test_hundred_concurrent_requests_make_one_token_request(
    clock: ManualClock,
) -> None:
    """100 requests that need a token at once cause exactly one token request."""
    gate = asyncio.Event()
    token_requests = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal token_requests
        if request.url.path == "/oauth_token.do":
            token_requests += 1
            await gate.wait()  # hold the token answer until every request is waiting
            return httpx.Response(200, json=token_body("T1"))
        assert request.headers["Authorization"] == "Bearer T1"
        return httpx.Response(200, json={"result": []})

    client = oauth_client(handler, clock)
    async with client:
        tasks = [asyncio.create_task(client.query(TABLE)) for _ in range(100)]
        for _ in range(5):
            await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(*tasks)
    assert token_requests == 1
    assert len(results) == 100


@pytest.mark.anyio
async def test_failed_token_request_is_shared_by_all_waiters(clock: ManualClock) -> None:
    """When the one token request fails, all 100 waiters get its error; it is not repeated."""
    gate = asyncio.Event()
    token_requests = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal token_requests
        token_requests += 1
        await gate.wait()
        return httpx.Response(401, json={"error": "access_denied"})

    client = oauth_client(handler, clock)
    async with client:
        tasks = [asyncio.create_task(client.query(TABLE)) for _ in range(100)]
        for _ in range(5):
            await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    assert token_requests == 1
    assert all(isinstance(result, AuthenticationError) for result in results)


@pytest.mark.anyio
async def test_a_waiter_giving_up_does_not_cancel_the_token_request(clock: ManualClock) -> None:
    """Cancelling one request leaves the shared token request running for the others."""
    gate = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth_token.do":
            await gate.wait()
            return httpx.Response(200, json=token_body("T1"))
        return httpx.Response(200, json={"result": []})

    client = oauth_client(handler, clock)
    async with client:
        quitter = asyncio.create_task(client.query(TABLE))
        stayer = asyncio.create_task(client.query(TABLE))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        quitter.cancel()
        gate.set()
        result = await stayer
        with pytest.raises(asyncio.CancelledError):
            await quitter
    assert len(result) == 0


@pytest.mark.anyio
async def test_401_renews_the_token_once_then_succeeds(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """A 401 on a live token (revoked early) causes one renewal and one resend."""
    token = router.post("/oauth_token.do")
    token.side_effect = [
        httpx.Response(200, json=token_body("T1")),
        httpx.Response(200, json=token_body("T2")),
    ]
    table = router.post(TABLE_URL).mock(
        side_effect=lambda request: (
            httpx.Response(201, json={"result": {"sys_id": "a" * 32}})
            if request.headers["Authorization"] == "Bearer T2"
            else httpx.Response(401, json=UNAUTHORIZED)
        )
    )
    async with make_client(auth=OAuth2ClientCredentials("c", SECRET)) as client:
        record = await client.create(TABLE, {"call_id": "c-1"})
    assert record == {"sys_id": "a" * 32}
    assert token.call_count == 2
    assert table.call_count == 2


@pytest.mark.anyio
async def test_401_after_renewal_raises_authentication_error(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """A second 401, with a fresh token, is an AuthenticationError: no loop of renewals."""
    token = router.post("/oauth_token.do").respond(200, json=token_body("T"))
    table = router.get(url__startswith=TABLE_URL).respond(401, json=UNAUTHORIZED)
    async with make_client(auth=OAuth2ClientCredentials("c", SECRET)) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.query(TABLE)
    assert token.call_count == 2
    assert table.call_count == 2
    assert caught.value.status_code == 401


@pytest.mark.anyio
async def test_burst_of_401s_on_one_token_renews_once(clock: ManualClock) -> None:
    """100 requests refused on the same revoked token cause one renewal, not 100."""
    token_requests = 0
    gate = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal token_requests
        if request.url.path == "/oauth_token.do":
            token_requests += 1
            if token_requests > 1:
                await gate.wait()
            return httpx.Response(200, json=token_body(f"T{token_requests}"))
        if request.headers["Authorization"] == "Bearer T1":
            return httpx.Response(401, json=UNAUTHORIZED)
        return httpx.Response(200, json={"result": []})

    client = oauth_client(handler, clock)
    async with client:
        tasks = [asyncio.create_task(client.query(TABLE)) for _ in range(100)]
        for _ in range(20):
            await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*tasks)
    assert token_requests == 2


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(503, text="busy"), TransientError),
        (httpx.Response(429, headers={"Retry-After": "5"}), RateLimited),
        (httpx.Response(200, text="<html>hibernating</html>"), TransientError),
        (httpx.Response(200, json={"token_type": "Bearer"}), TransientError),
        (httpx.Response(200, json=["T"]), TransientError),
        (httpx.Response(200, json={"access_token": ""}), TransientError),
        (httpx.Response(404, json=envelope_error("Not found", None)), PermanentError),
    ],
)
async def test_token_endpoint_trouble_is_classified(
    router: respx.MockRouter,
    make_client: Callable[..., ServiceNowClient],
    response: httpx.Response,
    error: type[Exception],
) -> None:
    """A token endpoint that is down, rate-limited or answers nonsense raises a typed error."""
    router.post("/oauth_token.do").mock(return_value=response)
    table = router.get(url__startswith=TABLE_URL).mock(side_effect=ok)
    async with make_client(auth=OAuth2ClientCredentials("c", SECRET)) as client:
        with pytest.raises(error) as caught:
            await client.query(TABLE)
    assert type(caught.value) is error
    assert table.call_count == 0


@pytest.mark.anyio
async def test_any_2xx_token_answer_is_read(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """A token answer with another 2xx status (a proxy's 201, say) is still used."""
    router.post("/oauth_token.do").respond(201, json=token_body("T1"))
    table = router.get(url__startswith=TABLE_URL).mock(side_effect=bearer("T1"))
    async with make_client(auth=OAuth2ClientCredentials("c", SECRET)) as client:
        await client.query(TABLE)
    assert table.calls.last.response.status_code == 200


@pytest.mark.anyio
async def test_token_endpoint_unreachable_is_transient(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """A connect failure on the token request is transient, like any unsent request."""
    router.post("/oauth_token.do").mock(side_effect=httpx.ConnectError)
    async with make_client(auth=OAuth2ClientCredentials("c", SECRET)) as client:
        with pytest.raises(TransientError):
            await client.query(TABLE)


@pytest.mark.anyio
async def test_table_style_error_on_token_endpoint(
    router: respx.MockRouter, make_client: Callable[..., ServiceNowClient]
) -> None:
    """A Table-API-style envelope or a non-JSON body on a refused grant still reads well."""
    router.post("/oauth_token.do").mock(
        side_effect=[
            httpx.Response(401, json=UNAUTHORIZED),
            httpx.Response(401, text="denied"),
            httpx.Response(401, json=["x"]),
        ]
    )
    async with make_client(auth=OAuth2ClientCredentials("c", SECRET)) as client:
        with pytest.raises(AuthenticationError) as first:
            await client.query(TABLE)
        with pytest.raises(AuthenticationError) as second:
            await client.query(TABLE)
        with pytest.raises(AuthenticationError) as third:
            await client.query(TABLE)
    assert first.value.sn_message == "User Not Authenticated"
    assert second.value.sn_message is None
    assert third.value.sn_message is None


@pytest.mark.anyio
async def test_secrets_never_reach_logs_reprs_or_errors(
    router: respx.MockRouter,
    make_client: Callable[..., ServiceNowClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No secret appears in a repr, a log line or an error message, whatever happens."""
    token = router.post("/oauth_token.do")
    token.side_effect = [
        httpx.Response(200, json=token_body("ACCESS-never-shown", refresh="R-never-shown")),
        httpx.Response(401, json={"error": "access_denied"}),
        httpx.Response(401, json={"error": "access_denied"}),
    ]
    router.get(url__startswith=TABLE_URL).respond(401, json=UNAUTHORIZED)
    auth = OAuth2Password("c", SECRET, "integration", USER_PASSWORD)
    caplog.set_level(logging.DEBUG, logger="callresilience")
    async with make_client(auth=auth) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.query(TABLE)
        shown = " ".join([repr(client), repr(auth), str(caught.value), caplog.text])
    for secret in (SECRET, USER_PASSWORD, "ACCESS-never-shown", "R-never-shown"):
        assert secret not in shown
    assert "integration" in repr(auth)
    for setting in (
        BasicAuth("u", PASSWORD),
        BearerToken(PASSWORD),
        ApiKey(PASSWORD),
        OAuth2ClientCredentials("c", PASSWORD),
        OAuth2RefreshToken("c", SECRET, PASSWORD),
    ):
        assert PASSWORD not in repr(setting)


@pytest.mark.parametrize(
    "build",
    [
        lambda: BasicAuth("", "pw"),
        lambda: BasicAuth("a:b", "pw"),
        lambda: BasicAuth("u", "pw-secret\n"),
        lambda: BearerToken(""),
        lambda: ApiKey("k\r\nX-Injected: 1"),
        lambda: OAuth2ClientCredentials("c", "s", refresh_margin=-1),
        lambda: OAuth2ClientCredentials("c", "s", token_path="oauth_token.do"),
        lambda: OAuth2ClientCredentials("c", "s", scope=""),
        lambda: OAuth2Password("c", "s", "u", None),
    ],
)
def test_bad_credentials_are_refused_without_echo(build: Callable[[], object]) -> None:
    """Empty, multi-line or malformed credentials raise InvalidInput that never shows them."""
    with pytest.raises(InvalidInput) as caught:
        build()
    assert "pw-secret" not in str(caught.value)
    assert "X-Injected" not in str(caught.value)


def test_unknown_auth_object_is_refused() -> None:
    """Passing something that is not an auth setting fails at construction, clearly."""
    with pytest.raises(InvalidInput, match="not an auth setting"):
        ServiceNowClient(BASE, auth=("user", "pw"))  # type: ignore[arg-type]
