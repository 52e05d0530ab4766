"""The fake's authentication: basic auth, the OAuth token endpoint, bearer tokens, API keys."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from callresilience.testing import ExpireTokens, FakeServiceNow, ManualClock

from ._helpers import BASE_URL

pytestmark = pytest.mark.anyio

UNAUTHENTICATED = {
    "error": {
        "message": "User Not Authenticated",
        "detail": "Required to provide Auth information",
    },
    "status": "failure",
}
TABLE = "/api/now/table/sys_user"


@pytest.fixture
def secured(clock: ManualClock) -> FakeServiceNow:
    """A fake with every kind of credential configured."""
    return FakeServiceNow(
        clock=clock,
        user="integration",
        password="s3cret-pw",
        client_id="cid",
        client_secret="csecret",
        api_key="key-123",
        token_ttl=1800,
    )


@pytest.fixture
async def anon(secured: FakeServiceNow) -> AsyncIterator[httpx.AsyncClient]:
    """A client without credentials, talking to the secured fake."""
    async with httpx.AsyncClient(transport=secured.transport(), base_url=BASE_URL) as client:
        yield client


async def token(client: httpx.AsyncClient, **form: str) -> httpx.Response:
    return await client.post("/oauth_token.do", data=form)


async def password_token(client: httpx.AsyncClient) -> httpx.Response:
    """The password grant with the secured fake's client and user."""
    return await token(
        client,
        grant_type="password",
        client_id="cid",
        client_secret="csecret",
        username="integration",
        password="s3cret-pw",
    )


async def test_open_fake_needs_no_credentials(client: httpx.AsyncClient) -> None:
    """With no credentials configured every request is accepted."""
    assert (await client.get(TABLE)).status_code == 200
    assert (
        await client.get(TABLE, headers={"Authorization": "Bearer whatever"})
    ).status_code == 200
    grant = await token(client, grant_type="client_credentials")
    assert grant.status_code == 200


async def test_missing_or_wrong_basic_auth_is_401(anon: httpx.AsyncClient) -> None:
    """No credentials or a wrong password answer 401 with the real envelope, echoing no secret."""
    missing = await anon.get(TABLE)
    assert missing.status_code == 401
    assert missing.json() == UNAUTHENTICATED
    assert missing.headers["x-is-logged-in"] == "false"
    assert "www-authenticate" in missing.headers
    wrong = await anon.get(TABLE, auth=("integration", "guess"))
    assert wrong.status_code == 401
    assert "guess" not in wrong.text
    garbled = await anon.get(TABLE, headers={"Authorization": "Basic %%%"})
    assert garbled.status_code == 401
    assert (await anon.get(TABLE, auth=("integration", "s3cret-pw"))).status_code == 200


async def test_api_key_header(anon: httpx.AsyncClient) -> None:
    """x-sn-apikey with the configured key is accepted; another key is 401."""
    assert (await anon.get(TABLE, headers={"x-sn-apikey": "key-123"})).status_code == 200
    assert (await anon.get(TABLE, headers={"x-sn-apikey": "nope"})).status_code == 401


async def test_password_grant_issues_a_bearer_token_until_it_expires(
    anon: httpx.AsyncClient, clock: ManualClock
) -> None:
    """The password grant returns a token set; the token works until expires_in passes."""
    response = await password_token(anon)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "expires_in", "token_type", "scope"}
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 1800)
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await anon.get(TABLE, headers=bearer)).status_code == 200
    clock.advance(1799.9)
    assert (await anon.get(TABLE, headers=bearer)).status_code == 200
    clock.advance(0.1)
    expired = await anon.get(TABLE, headers=bearer)
    assert expired.status_code == 401
    assert expired.json() == UNAUTHENTICATED


async def test_refresh_token_grant(anon: httpx.AsyncClient, secured: FakeServiceNow) -> None:
    """A refresh token buys a new access token, even after the old one was revoked."""
    first = (
        await token(anon, grant_type="client_credentials", client_id="cid", client_secret="csecret")
    ).json()
    secured.expire_tokens()
    assert (
        await anon.get(TABLE, headers={"Authorization": f"Bearer {first['access_token']}"})
    ).status_code == 401
    again = await token(
        anon,
        grant_type="refresh_token",
        client_id="cid",
        client_secret="csecret",
        refresh_token=first["refresh_token"],
    )
    assert again.status_code == 200
    assert (
        await anon.get(TABLE, headers={"Authorization": f"Bearer {again.json()['access_token']}"})
    ).status_code == 200
    secured.expire_tokens(refresh_tokens=True)
    refused = await token(
        anon,
        grant_type="refresh_token",
        client_id="cid",
        client_secret="csecret",
        refresh_token=first["refresh_token"],
    )
    assert refused.status_code == 401


async def test_client_credentials_in_a_basic_header(anon: httpx.AsyncClient) -> None:
    """The client may authenticate to the token endpoint with a Basic header."""
    response = await anon.post(
        "/oauth_token.do", data={"grant_type": "client_credentials"}, auth=("cid", "csecret")
    )
    assert response.status_code == 200


async def test_token_endpoint_refusals(anon: httpx.AsyncClient, clock: ManualClock) -> None:
    """Wrong client, wrong user or unknown grant are refused with OAuth-style bodies."""
    wrong_client = await token(
        anon, grant_type="client_credentials", client_id="cid", client_secret="x"
    )
    assert wrong_client.status_code == 401
    assert wrong_client.json() == {"error_description": "access_denied", "error": "server_error"}
    assert "csecret" not in wrong_client.text
    wrong_user = await token(
        anon,
        grant_type="password",
        client_id="cid",
        client_secret="csecret",
        username="integration",
        password="x",
    )
    assert wrong_user.status_code == 401
    unknown = await token(anon, grant_type="magic")
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "unsupported_grant_type"
    basic_only = FakeServiceNow(clock=clock, user="u", password="p")
    async with httpx.AsyncClient(transport=basic_only.transport(), base_url=BASE_URL) as client:
        no_client = await token(client, grant_type="client_credentials", client_id="any")
        assert no_client.status_code == 401
        password = await token(
            client, grant_type="password", client_id="any", username="u", password="p"
        )
        assert password.status_code == 200


async def test_expire_tokens_fault_revokes_tokens_while_active(
    anon: httpx.AsyncClient, secured: FakeServiceNow, clock: ManualClock
) -> None:
    """During an ExpireTokens window every bearer token is refused; afterwards new ones work."""
    grant = {"grant_type": "client_credentials", "client_id": "cid", "client_secret": "csecret"}
    old = (await token(anon, **grant)).json()["access_token"]
    secured.faults.add(ExpireTokens(), start=10, duration=5, tables={"sys_user"})
    clock.advance(10)
    assert (await anon.get(TABLE, headers={"Authorization": f"Bearer {old}"})).status_code == 401
    new = (await token(anon, **grant)).json()["access_token"]
    assert (await anon.get(TABLE, headers={"Authorization": f"Bearer {new}"})).status_code == 401
    clock.advance(5)
    newer = (await token(anon, **grant)).json()["access_token"]
    assert (await anon.get(TABLE, headers={"Authorization": f"Bearer {newer}"})).status_code == 200


async def test_secrets_never_reach_repr_or_the_request_log(
    anon: httpx.AsyncClient, secured: FakeServiceNow
) -> None:
    """repr() and the request log hold no password, client secret, API key or token."""
    response = await password_token(anon)
    access = response.json()["access_token"]
    await anon.get(TABLE, headers={"Authorization": f"Bearer {access}", "x-sn-apikey": "key-123"})
    text = repr(secured) + repr(secured.requests)
    for secret in ("s3cret-pw", "csecret", "key-123", access):
        assert secret not in text
