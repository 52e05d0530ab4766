"""How the client proves who it is: basic, bearer, API key, and OAuth2 at `/oauth_token.do`.

The settings are frozen attrs values whose secrets are `repr=False`, so printing a client's
configuration never shows one. The OAuth2 session fetches a token on first use, refreshes it
ahead of its expiry, and lets only one token request be in flight however many requests need a
token at the same moment.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any, Final, Protocol, TypeAlias

import attrs
import httpx

from .._clock import Clock
from .._errors import AuthenticationError, InvalidInput, TransientError
from ._classify import classify_status
from ._durations import to_seconds

__all__ = [
    "ApiKey",
    "Auth",
    "Authenticator",
    "BasicAuth",
    "BearerToken",
    "OAuth2ClientCredentials",
    "OAuth2Password",
    "OAuth2RefreshToken",
    "make_authenticator",
]

log = logging.getLogger("callresilience.servicenow.auth")

_FORBIDDEN: Final = frozenset("\r\n\x00")


def _credential(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    # The message names the field only: the rejected value may be a secret.
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{attribute.name}: must be a non-empty string", field=attribute.name)
    if any(ch in _FORBIDDEN for ch in value):
        raise InvalidInput(
            f"{attribute.name}: must not contain a line break or NUL (check for a trailing "
            "newline from the file or variable it was read from)",
            field=attribute.name,
        )


def _username(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    _credential(instance, attribute, value)
    if ":" in str(value):
        raise InvalidInput(
            f"{attribute.name}: must not contain ':' (basic auth cannot carry it)",
            field=attribute.name,
        )


def _optional(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        _credential(instance, attribute, value)


def _margin(value: float | timedelta) -> float:
    return to_seconds(value, name="refresh_margin", allow_zero=True)


def _token_path(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value.startswith("/") or "?" in value or "#" in value:
        raise InvalidInput(
            "token_path: must be a path starting with '/', such as '/oauth_token.do'",
            field="token_path",
        )


@attrs.frozen
class BasicAuth:
    """HTTP basic authentication with a ServiceNow user's name and password.

    Attributes:
        username: The integration user's `user_name`.
        password: Its password; never shown in a repr, a log line or an error.
    """

    username: str = attrs.field(validator=_username)
    password: str = attrs.field(validator=_credential, repr=False)


@attrs.frozen
class BearerToken:
    """A fixed OAuth2 access token obtained elsewhere, sent as ``Authorization: Bearer``.

    The client cannot renew it: a 401 raises `AuthenticationError` at once.

    Attributes:
        token: The access token; never shown.
    """

    token: str = attrs.field(validator=_credential, repr=False)


@attrs.frozen
class ApiKey:
    """A ServiceNow REST API key (an inbound API key authentication profile).

    Attributes:
        key: The key's token; never shown.
        header: The header that carries it; ServiceNow's default is ``x-sn-apikey``.
    """

    key: str = attrs.field(validator=_credential, repr=False)
    header: str = attrs.field(default="x-sn-apikey", validator=_credential)


@attrs.frozen
class OAuth2ClientCredentials:
    """OAuth2 with the client credentials grant (an OAuth application user in ServiceNow).

    Attributes:
        client_id: The OAuth application's client id.
        client_secret: Its secret; never shown.
        scope: A scope to ask for, if the application restricts them.
        refresh_margin: How long before expiry a new token is fetched (seconds or timedelta).
        token_path: The token endpoint on the instance.
    """

    client_id: str = attrs.field(validator=_credential)
    client_secret: str = attrs.field(validator=_credential, repr=False)
    scope: str | None = attrs.field(default=None, kw_only=True, validator=_optional)
    refresh_margin: float = attrs.field(default=60.0, kw_only=True, converter=_margin)
    token_path: str = attrs.field(default="/oauth_token.do", kw_only=True, validator=_token_path)


@attrs.frozen
class OAuth2Password:
    """OAuth2 with the resource owner password grant.

    The instance answers with a refresh token too; it is used for later renewals, and the
    password grant is used again if the instance refuses the refresh token.

    Attributes:
        client_id: The OAuth application's client id.
        client_secret: Its secret; never shown.
        username: The integration user's `user_name`.
        password: Its password; never shown.
        scope: A scope to ask for, if the application restricts them.
        refresh_margin: How long before expiry a new token is fetched (seconds or timedelta).
        token_path: The token endpoint on the instance.
    """

    client_id: str = attrs.field(validator=_credential)
    client_secret: str = attrs.field(validator=_credential, repr=False)
    username: str = attrs.field(validator=_credential)
    password: str = attrs.field(validator=_credential, repr=False)
    scope: str | None = attrs.field(default=None, kw_only=True, validator=_optional)
    refresh_margin: float = attrs.field(default=60.0, kw_only=True, converter=_margin)
    token_path: str = attrs.field(default="/oauth_token.do", kw_only=True, validator=_token_path)


@attrs.frozen
class OAuth2RefreshToken:
    """OAuth2 from a refresh token obtained elsewhere (the refresh token grant).

    Attributes:
        client_id: The OAuth application's client id.
        client_secret: Its secret; never shown.
        refresh_token: The refresh token; never shown. When the instance sends a new one, the
            new one is used from then on.
        scope: A scope to ask for, if the application restricts them.
        refresh_margin: How long before expiry a new token is fetched (seconds or timedelta).
        token_path: The token endpoint on the instance.
    """

    client_id: str = attrs.field(validator=_credential)
    client_secret: str = attrs.field(validator=_credential, repr=False)
    refresh_token: str = attrs.field(validator=_credential, repr=False)
    scope: str | None = attrs.field(default=None, kw_only=True, validator=_optional)
    refresh_margin: float = attrs.field(default=60.0, kw_only=True, converter=_margin)
    token_path: str = attrs.field(default="/oauth_token.do", kw_only=True, validator=_token_path)


OAuth2Grant: TypeAlias = OAuth2ClientCredentials | OAuth2Password | OAuth2RefreshToken
Auth: TypeAlias = BasicAuth | BearerToken | ApiKey | OAuth2Grant

#: Sends a form-encoded POST to a path on the current endpoint; raises a classified
#: `ServiceNowError` when no response arrives.
PostForm: TypeAlias = Callable[[str, Mapping[str, str]], Awaitable[httpx.Response]]


class Authenticator(Protocol):
    """What the client asks of an auth method."""

    @property
    def reauthenticates(self) -> bool:
        """Whether a 401 is worth one new token (only OAuth2 can get one)."""
        ...

    async def headers(self) -> tuple[dict[str, str], str]:
        """Return the headers to send and a marker for `invalidate`."""
        ...

    def invalidate(self, marker: str) -> None:
        """Forget the credential identified by `marker`, after a 401."""
        ...


@attrs.define
class _StaticAuthenticator:
    _headers: dict[str, str] = attrs.field(repr=False)

    @property
    def reauthenticates(self) -> bool:
        return False

    async def headers(self) -> tuple[dict[str, str], str]:
        return dict(self._headers), ""

    def invalidate(self, marker: str) -> None:
        """Nothing to forget: a fixed credential cannot be renewed."""


def _form(grant: OAuth2Grant, refresh_token: str | None) -> dict[str, str]:
    form = {"client_id": grant.client_id, "client_secret": grant.client_secret}
    if refresh_token is not None:
        form.update(grant_type="refresh_token", refresh_token=refresh_token)
    elif isinstance(grant, OAuth2Password):
        form.update(grant_type="password", username=grant.username, password=grant.password)
    else:
        form.update(grant_type="client_credentials")
    if grant.scope is not None:
        form["scope"] = grant.scope
    return form


@attrs.define
class _OAuth2Session:
    """Holds the current access token and renews it, one token request at a time."""

    _grant: OAuth2Grant
    _clock: Clock
    _post: PostForm = attrs.field(repr=False)
    _access_token: str | None = attrs.field(default=None, init=False, repr=False)
    _refresh_token: str | None = attrs.field(default=None, init=False, repr=False)
    _expires_at: float | None = attrs.field(default=None, init=False)
    _inflight: asyncio.Task[str] | None = attrs.field(default=None, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if isinstance(self._grant, OAuth2RefreshToken):
            self._refresh_token = self._grant.refresh_token

    @property
    def reauthenticates(self) -> bool:
        return True

    def _fresh(self) -> bool:
        if self._access_token is None:
            return False
        if self._expires_at is None:
            return True
        return self._clock.now() < self._expires_at - self._grant.refresh_margin

    async def headers(self) -> tuple[dict[str, str], str]:
        token = await self.token()
        return {"Authorization": f"Bearer {token}"}, token

    def invalidate(self, marker: str) -> None:
        # Only the token that was refused: a newer one fetched meanwhile is kept, so a burst
        # of 401s on the old token costs one token request, not one each.
        if self._access_token == marker:
            self._access_token = None

    async def token(self) -> str:
        """Return a valid access token, fetching one if needed (single-flight)."""
        if self._fresh() and self._access_token is not None:
            return self._access_token
        if self._inflight is None:
            self._inflight = asyncio.get_running_loop().create_task(self._fetch())
            self._inflight.add_done_callback(_retrieve)
        # Shielded: one caller giving up must not cancel the fetch the others wait on.
        return await asyncio.shield(self._inflight)

    async def _fetch(self) -> str:
        try:
            if self._refresh_token is not None:
                try:
                    return await self._request(_form(self._grant, self._refresh_token))
                except AuthenticationError:
                    if isinstance(self._grant, OAuth2RefreshToken):
                        raise
                    log.info("the instance refused the refresh token; using the original grant")
                    self._refresh_token = None
            return await self._request(_form(self._grant, None))
        finally:
            self._inflight = None

    async def _request(self, form: dict[str, str]) -> str:
        grant_type = form["grant_type"]
        action = f"POST {self._grant.token_path}"
        response = await self._post(self._grant.token_path, form)
        if response.status_code in (400, 401):
            error, description = _oauth_error(response.content)
            words = ", ".join(part for part in (error, description) if part)
            raise AuthenticationError(
                f"{action}: the instance refused the OAuth2 {grant_type} grant "
                f"({response.status_code}{': ' + words if words else ''}); check the client id "
                "and secret, the user's credentials, and that the OAuth application is active",
                status_code=response.status_code,
                sn_message=error,
                sn_detail=description,
                transaction_id=response.headers.get("x-transaction-id"),
            )
        if not response.is_success:
            raise classify_status(
                status_code=response.status_code,
                headers=response.headers,
                content=response.content,
                write=False,
                action=action,
                now=self._clock.time(),
            )
        try:
            body = json.loads(response.content)
            token = body["access_token"]
            if not isinstance(token, str) or not token:
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise TransientError(
                f"{action}: the token answer had no usable access_token; ask again after a "
                "pause, and check the token_path points at the OAuth endpoint",
                status_code=response.status_code,
            ) from None
        self._access_token = token
        refresh = body.get("refresh_token")
        if isinstance(refresh, str) and refresh:
            self._refresh_token = refresh
        expires_in = body.get("expires_in")
        if isinstance(expires_in, str) and expires_in.isdigit():
            expires_in = int(expires_in)
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
            self._expires_at = self._clock.now() + float(expires_in)
        else:
            self._expires_at = None
        log.info(
            "fetched an OAuth2 access token with the %s grant (expires in %s s)",
            grant_type,
            expires_in if self._expires_at is not None else "an unknown time",
        )
        return token


def _retrieve(task: asyncio.Task[str]) -> None:
    # Mark the outcome as seen even when every waiter was cancelled.
    if not task.cancelled():
        task.exception()


def _oauth_error(content: bytes) -> tuple[str | None, str | None]:
    try:
        body = json.loads(content)
    except ValueError:
        return None, None
    if not isinstance(body, dict):
        return None, None
    error: object = body.get("error")
    description: object = body.get("error_description")
    if isinstance(error, dict):  # a Table-API-style envelope
        envelope = error
        error, description = envelope.get("message"), envelope.get("detail")
    return _text(error), _text(description)


def _text(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def make_authenticator(auth: Auth, *, clock: Clock, post: PostForm) -> Authenticator:
    """Return the authenticator for an auth setting.

    Args:
        auth: One of the auth settings.
        clock: Where token expiry is read from.
        post: How to send the token request.

    Raises:
        InvalidInput: When `auth` is not one of the auth settings.
    """
    if isinstance(auth, BasicAuth):
        pair = f"{auth.username}:{auth.password}".encode()
        return _StaticAuthenticator({"Authorization": "Basic " + base64.b64encode(pair).decode()})
    if isinstance(auth, BearerToken):
        return _StaticAuthenticator({"Authorization": f"Bearer {auth.token}"})
    if isinstance(auth, ApiKey):
        return _StaticAuthenticator({auth.header: auth.key})
    if isinstance(auth, OAuth2ClientCredentials | OAuth2Password | OAuth2RefreshToken):
        return _OAuth2Session(auth, clock, post)
    raise InvalidInput(
        f"auth: {type(auth).__name__} is not an auth setting; use BasicAuth, BearerToken, "
        "ApiKey, OAuth2ClientCredentials, OAuth2Password or OAuth2RefreshToken",
        field="auth",
    )
