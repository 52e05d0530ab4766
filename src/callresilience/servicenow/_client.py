"""The async ServiceNow Table API client.

A thin I/O layer: decisions live in `_classify` (what an outcome means), `_headers` (what the
pacing headers say), `_endpoints` (which base URL is in use) and `_auth` (which credential to
send). The client sends one request at a time per call and never sleeps: retrying with backoff
is the drainer's job, and the errors it raises carry what the drainer needs to decide.
"""

from __future__ import annotations

import functools
import json
import logging
import ssl
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from datetime import timedelta
from types import TracebackType
from typing import Any, Final, TypeAlias

import attrs
import httpx

from .._clock import Clock, SystemClock
from .._errors import (
    AmbiguousError,
    InvalidInput,
    PermanentError,
    RateLimit,
    ServiceNowError,
    TransientError,
)
from .._model import check_sys_id
from ._auth import Auth, make_authenticator
from ._batch import BATCH_PATH, BatchRequest, batch_body, batch_outcomes
from ._checks import check_table, payload_json, ref_value, with_correlation
from ._classify import (
    Decoded,
    classify_exception,
    classify_response,
    classify_status,
    endpoint_failed,
    is_write,
    may_still_run,
    nothing_sent,
    record_of,
)
from ._durations import to_seconds
from ._endpoints import Endpoints
from ._headers import parse_rate_limit
from ._query import Query, check_field

__all__ = [
    "BatchRequest",
    "CreateResult",
    "QueryResult",
    "Record",
    "ServiceNowClient",
    "ref_value",
]

log = logging.getLogger("callresilience.servicenow")

#: A record as the Table API returns it: field name to value (strings, or reference dicts).
Record: TypeAlias = dict[str, Any]

# Both, on every request: ServiceNow answers 400 to a write that lacks either.
_JSON_HEADERS: Final = {"Accept": "application/json", "Content-Type": "application/json"}
_TABLE_PATH: Final = "/api/now/table/"


@attrs.frozen
class QueryResult:
    """The records a query returned.

    Attributes:
        records: The records, at most `limit` of them.
        total_count: How many records match in all (`X-Total-Count`), when the instance said.
    """

    records: tuple[Record, ...]
    total_count: int | None = None

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)


@attrs.frozen
class CreateResult:
    """What `ServiceNowClient.create_once` settled on.

    Attributes:
        record: The record, as the instance returned it.
        created: True when this call created it; False when it already existed and was adopted.
        attempts: How many POSTs this call sent (0 when a first lookup found the record).
    """

    record: Record
    created: bool
    attempts: int

    @property
    def sys_id(self) -> str | None:
        """The record's sys_id."""
        return ref_value(self.record.get("sys_id"))


def _fields_param(fields: Iterable[str] | None) -> dict[str, str]:
    if fields is None:
        return {}
    if isinstance(fields, str):
        fields = (fields,)
    if not isinstance(fields, Iterable):
        raise InvalidInput("fields: give a list of field names", field="fields")
    names = [check_field(name, argument="fields") for name in fields]
    return {"sysparm_fields": ",".join(names)} if names else {}


def _whole(value: object, *, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InvalidInput(f"{name}: expected a whole number of {least} or more", field=name)
    return value


class ServiceNowClient:
    """An async client for the ServiceNow Table API that says what every failure means.

    Every failure is raised as one of `TransientError` (nothing was written; retry after a
    pause), `RateLimited` (429), `AmbiguousError` (a write was sent and its effect is
    unknown), `PermanentError` or `AuthenticationError`. The client never sleeps or retries
    with backoff; it only moves to the next base URL when one cannot be reached, renews an
    OAuth2 token once on a 401, and, in `create_once`, looks a record up before posting it
    again.

    Use it as an async context manager, or call `aclose()`::

        async with ServiceNowClient(
            "https://example.service-now.com",
            auth=OAuth2ClientCredentials(client_id, client_secret),
        ) as client:
            record = await client.create("incident", {"short_description": "Printer on fire"})

    Args:
        base_url: The instance's base URL, or several in order of preference (failover).
        auth: How to authenticate: `BasicAuth`, `BearerToken`, `ApiKey`,
            `OAuth2ClientCredentials`, `OAuth2Password` or `OAuth2RefreshToken`.
        connect_timeout: Longest wait to open a connection (seconds or timedelta).
        read_timeout: Longest wait between two pieces of the answer. ServiceNow cancels a
            Table API transaction after 60 s and says so; a shorter timeout gives up earlier,
            but a write that times out is ambiguous.
        write_timeout: Longest wait to send a piece of the request.
        pool_timeout: Longest wait for a free connection from the pool.
        verify: TLS verification: True (the default), False, or an `ssl.SSLContext`. Only for
            the default transport; a transport you pass does its own TLS.
        transport: Any `httpx.AsyncBaseTransport`, such as `aiohttp_transport()` or an
            `httpx.MockTransport` in tests. Default: httpx's own.
        clock: Where time comes from (token expiry, `Retry-After` dates, latency).
        create_attempts: How many POSTs `create_once` may send in one call.
        probe_table: The table `probe()` reads one sys_id from.
        exclude_reference_link: Ask for reference fields as bare sys_ids instead of
            ``{"link", "value"}`` objects (`ref_value` reads both).
        on_endpoint_change: Called with ``(old_url, new_url, reason)`` whenever the URL in
            use changes; exceptions it raises are logged.

    Raises:
        InvalidInput: When an option is not valid.
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        auth: Auth,
        connect_timeout: float | timedelta = 5.0,
        read_timeout: float | timedelta = 30.0,
        write_timeout: float | timedelta = 10.0,
        pool_timeout: float | timedelta = 5.0,
        verify: bool | ssl.SSLContext = True,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        create_attempts: int = 3,
        probe_table: str = "sys_user",
        exclude_reference_link: bool = False,
        on_endpoint_change: Callable[[str, str, str], object] | None = None,
    ) -> None:
        # A plain class rather than attrs: the constructor checks and converts a dozen options
        # and builds the HTTP client, which reads better written out than as converters.
        self._endpoints = Endpoints(base_url)
        self._timeout = httpx.Timeout(
            connect=to_seconds(connect_timeout, name="connect_timeout"),
            read=to_seconds(read_timeout, name="read_timeout"),
            write=to_seconds(write_timeout, name="write_timeout"),
            pool=to_seconds(pool_timeout, name="pool_timeout"),
        )
        if not isinstance(verify, bool | ssl.SSLContext):
            raise InvalidInput("verify: expected True, False or an ssl.SSLContext", field="verify")
        if transport is not None and verify is not True:
            raise InvalidInput(
                "verify: applies only to the default transport; configure TLS on the "
                "transport you pass (aiohttp_transport(verify=...) for example)",
                field="verify",
            )
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._create_attempts = _whole(create_attempts, name="create_attempts", least=1)
        self._probe_table = check_table(probe_table)
        self._exclude_reference_link = bool(exclude_reference_link)
        self._auth_setting = auth
        self._auth = make_authenticator(auth, clock=self._clock, post=self._post_form)
        self._rate_limit: RateLimit | None = None
        self._on_endpoint_change = on_endpoint_change
        self._http = httpx.AsyncClient(
            transport=transport,
            verify=verify,
            timeout=self._timeout,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return (
            f"ServiceNowClient(endpoint={self.endpoint!r}, auth={self._auth_setting!r}, "
            f"timeout={self._timeout!r})"
        )

    @property
    def endpoint(self) -> str:
        """The base URL requests go to now."""
        return self._endpoints.current

    @property
    def endpoints(self) -> tuple[str, ...]:
        """Every base URL, in order of preference."""
        return self._endpoints.urls

    @property
    def primary(self) -> str:
        """The first base URL, the one the client prefers."""
        return self._endpoints.urls[0]

    def _endpoint_changed(self, old: str, new: str, reason: str) -> None:
        if self._on_endpoint_change is None:
            return
        try:
            self._on_endpoint_change(old, new, reason)
        except Exception:
            log.exception("the on_endpoint_change callback failed")

    @property
    def timeout(self) -> httpx.Timeout:
        """The connect, read, write and pool timeouts in use."""
        return self._timeout

    @property
    def rate_limit(self) -> RateLimit | None:
        """The `X-RateLimit-*` headers of the latest response that had any."""
        return self._rate_limit

    async def __aenter__(self) -> ServiceNowClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections (and the transport, including one you passed)."""
        await self._http.aclose()

    # The Table API.

    async def create(
        self, table: str, payload: Mapping[str, Any], *, fields: Iterable[str] | None = None
    ) -> Record:
        """Create a record (POST) and return it as the instance stored it.

        A POST is not idempotent: after an `AmbiguousError` the record may exist. Use
        `create_once` for records that must exist exactly once.

        Args:
            table: The table, e.g. ``"sn_openframe_phone_log"``.
            payload: Field names to values.
            fields: Fields to return (all when None).

        Raises:
            TransientError: Nothing was written; send it again after a pause.
            AmbiguousError: It may have been written; look it up before sending it again.
            PermanentError: The instance refused it.
            AuthenticationError: The credentials were refused.
        """
        path = _TABLE_PATH + check_table(table)
        decoded = await self._call("POST", path, params=_fields_param(fields), payload=payload)
        return self._record(decoded, "POST", path)

    async def get(self, table: str, sys_id: str, *, fields: Iterable[str] | None = None) -> Record:
        """Return one record by its sys_id.

        Raises:
            PermanentError: With status_code 404 when there is no such record or an ACL hides
                it; others as for `create`, except that a read is never ambiguous.
        """
        path = f"{_TABLE_PATH}{check_table(table)}/{check_sys_id('sys_id', sys_id)}"
        decoded = await self._call("GET", path, params=_fields_param(fields))
        return self._record(decoded, "GET", path)

    async def query(
        self,
        table: str,
        query: Query | None = None,
        *,
        fields: Iterable[str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> QueryResult:
        """Return the records matching an encoded query, with the total count.

        A 404 "No Record found" (what older API versions answer when nothing matches) is
        returned as no records.

        Args:
            table: The table.
            query: Built with `Query`; a plain string is refused, so that no value is ever
                pasted into a query unchecked.
            fields: Fields to return (all when None).
            limit: Return at most this many records (ServiceNow's default is 10000).
            offset: Skip this many records first.

        Raises:
            InvalidInput: When `query` is not a `Query`, or an option is invalid.
        """
        path = _TABLE_PATH + check_table(table)
        if query is not None and not isinstance(query, Query):
            raise InvalidInput(
                "query: build it with Query() (e.g. Query().eq('call_id', call_id)); strings "
                "are refused so that no value is pasted into a query unchecked",
                field="query",
            )
        params = _fields_param(fields)
        if query is not None and str(query):
            params["sysparm_query"] = str(query)
        if limit is not None:
            params["sysparm_limit"] = str(_whole(limit, name="limit", least=1))
        if offset is not None:
            params["sysparm_offset"] = str(_whole(offset, name="offset", least=0))
        try:
            decoded = await self._call("GET", path, params=params)
        except PermanentError as exc:
            if _no_record_found(exc):
                return QueryResult((), total_count=0)
            raise
        if not isinstance(decoded.result, list) or not all(
            isinstance(item, dict) for item in decoded.result
        ):
            raise TransientError(
                f"GET {path}: the instance answered 200 but 'result' is not a list of records; "
                "the read changed nothing, send it again after a pause",
                status_code=200,
                transaction_id=decoded.transaction_id,
            )
        return QueryResult(tuple(decoded.result), total_count=decoded.total_count)

    async def update(
        self,
        table: str,
        sys_id: str,
        payload: Mapping[str, Any],
        *,
        fields: Iterable[str] | None = None,
    ) -> Record:
        """Change fields of a record (PATCH) and return the record.

        Raises:
            AmbiguousError: It may have been applied. Setting fields to values is safe to send
                again; appending to a journal field (work notes) is not.
            TransientError, PermanentError, AuthenticationError: As for `create`.
        """
        path = f"{_TABLE_PATH}{check_table(table)}/{check_sys_id('sys_id', sys_id)}"
        decoded = await self._call("PATCH", path, params=_fields_param(fields), payload=payload)
        return self._record(decoded, "PATCH", path)

    async def probe(self, *, endpoint: str | None = None) -> float:
        """Read one sys_id from the probe table and return how long it took, in seconds.

        A cheap read for health checks and half-open circuit breakers.

        Args:
            endpoint: Ask this one of `endpoints` (default: the one in use); a failure then
                never moves the client to another URL.

        Raises:
            InvalidInput: `endpoint` is not one of the client's URLs.
            TransientError, PermanentError, AuthenticationError: As any read.
        """
        if endpoint is not None:
            endpoint = self._endpoints.known(endpoint, field="endpoint")
        started = self._clock.now()
        path = _TABLE_PATH + self._probe_table
        params = {"sysparm_fields": "sys_id", "sysparm_limit": "1"}
        # Pinned in the context too, so that a token request the probe needs goes there.
        pinned = _PINNED.set(endpoint)
        try:
            await self._call("GET", path, params=params)
        except PermanentError as exc:
            if not _no_record_found(exc):
                raise
        finally:
            _PINNED.reset(pinned)
        return max(0.0, self._clock.now() - started)

    def use_endpoint(self, url: str, *, reason: str = "chosen") -> bool:
        """Send requests to `url` (one of `endpoints`) from now on; return whether it changed.

        For failing back to the primary once it is healthy again (the engine does this);
        `reason` goes to `on_endpoint_change`.

        Raises:
            InvalidInput: `url` is not one of the client's base URLs.
        """
        previous = self._endpoints.current
        changed = self._endpoints.use(url)
        if changed:
            log.info("endpoint: moving from %s to %s (%s)", previous, url, reason)
            self._endpoint_changed(previous, url, reason)
        return changed

    async def batch(
        self, requests: Iterable[BatchRequest], *, fields: Iterable[str] | None = None
    ) -> list[Record | ServiceNowError]:
        """Send several writes in one round trip through the Batch API; return each outcome.

        The instance runs them one after the other and not atomically, so each has its own
        outcome, in the order given: the record as the instance stored it, or the error the
        same request sent alone would have raised. A sub-request the instance did not run
        (unserviced) gets a `TransientError`; one its answer does not mention, an
        `AmbiguousError`.

        Args:
            requests: Built with `BatchRequest.create` and `BatchRequest.update`.
            fields: Fields to return of each record (all when None); ``("sys_id",)`` spares
                the instance rendering, and the network carrying, whole records.

        Raises:
            InvalidInput: When `requests` is empty or holds something else, or a field name
                is not valid.
            TransientError: Nothing was run (a connect failure; `RateLimited` for a 429).
            AmbiguousError: The batch was sent and no usable answer came: any of its writes
                may have been committed.
            PermanentError: The instance refused the batch itself (the Batch API is not
                available to the integration user, for example).
            AuthenticationError: The credentials were refused.
        """
        try:
            requests = list(requests)
        except TypeError:
            requests = []
        if not requests or not all(isinstance(r, BatchRequest) for r in requests):
            raise InvalidInput(
                "requests: give one or more BatchRequest (BatchRequest.create(...), "
                "BatchRequest.update(...))",
                field="requests",
            )
        params = _fields_param(fields)
        if self._exclude_reference_link:
            params["sysparm_exclude_reference_link"] = "true"
        query = f"?{urllib.parse.urlencode(params, safe=',')}" if params else ""
        body = batch_body(uuid.uuid4().hex, requests, query)
        response = await self._authorized(
            "POST", BATCH_PATH, params=None, body=body, write=True, references=False
        )
        action = f"POST {BATCH_PATH}"
        now = self._clock.time()
        if not 200 <= response.status_code < 300:
            raise _logged(
                classify_status(
                    status_code=response.status_code,
                    headers=response.headers,
                    content=response.content,
                    write=True,
                    action=action,
                    now=now,
                )
            )
        try:
            answer = json.loads(response.content)
        except (ValueError, RecursionError):
            answer = None
        outcomes = batch_outcomes(requests, answer, now)
        if outcomes is None:
            raise _logged(
                AmbiguousError(
                    f"{action}: the instance answered {response.status_code} but the body is "
                    "not a batch answer; any of its writes may have been committed, look the "
                    "records up before sending them again",
                    status_code=response.status_code,
                )
            )
        for outcome in outcomes:
            if isinstance(outcome, ServiceNowError):
                _logged(outcome)
        return outcomes

    async def create_once(
        self,
        table: str,
        payload: Mapping[str, Any],
        *,
        correlation: tuple[str, str],
        lookup_first: bool = False,
        max_attempts: int | None = None,
        fields: Iterable[str] | None = None,
    ) -> CreateResult:
        """Create a record unless one with the same correlation value exists; never two.

        The payload carries a correlation field whose value is unique to the record (the
        phone log's ``call_id``, or the field configured for Interactions). After a POST
        whose effect is unknown, the record is looked up by that field before anything is
        posted again, and adopted when found.

        A POST is sent again in this call only when the instance itself answered (a 5xx, a
        broken body), since its transaction has then ended and the lookup is authoritative.
        After a timeout, a broken connection, a 502 or a 504 the first request may still be
        running on the instance, so a lookup that finds nothing proves nothing: the call
        raises `AmbiguousError`, and the caller retries later with ``lookup_first=True``.

        If the lookup itself fails (timeout, 5xx, 429), nothing is posted: the call raises
        `AmbiguousError` from the lookup's error, keeping its `retry_after` and
        `rate_limit`. A lookup that returns a record whose correlation field differs means
        the instance ignored the condition (an unknown or unreadable field): that is a
        `PermanentError`, since duplicates could not be detected.

        Args:
            table: The table.
            payload: The record's fields; the correlation field is added if missing.
            correlation: ``(field, value)``; the value is checked as a query value.
            lookup_first: Look the record up before the first POST. Pass True whenever an
                earlier attempt for the same record ended in `AmbiguousError`.
            max_attempts: The most POSTs to send in this call (default: the client's
                `create_attempts`).
            fields: Fields to return of a record this call creates (all when None); a
                record adopted after a lookup comes whole.

        Returns:
            The record, and whether this call created it or adopted an existing one.

        Raises:
            AmbiguousError: The record may exist and could not be found yet; call again
                later with ``lookup_first=True``.
            TransientError: Nothing was written (a connect failure, a 429 on the POST).
            PermanentError, AuthenticationError: As for `create`.
            UnsafeQueryValue: When the correlation value cannot go into a query.
        """
        table = check_table(table)
        body, field, value = with_correlation(payload, correlation)
        payload_json(body)  # refused before anything is sent, the lookup included
        lookup = Query().eq(field, value).order_by("sys_created_on")
        limit = self._create_attempts if max_attempts is None else max_attempts
        limit = _whole(limit, name="max_attempts", least=1)
        if isinstance(fields, Iterable) and not isinstance(fields, str):
            fields = tuple(fields)  # read once here, used by every POST
        _fields_param(fields)  # a bad name is refused before anything is sent

        if lookup_first:
            found = await self._find(table, field, value, lookup)
            if found is not None:
                log.info("%s: adopted the existing record found by %s", table, field)
                return CreateResult(found, created=False, attempts=0)
        posts = 0
        while True:
            posts += 1
            try:
                record = await self.create(table, body, fields=fields)
            except AmbiguousError as exc:
                ambiguous = exc
            else:
                return CreateResult(record, created=True, attempts=posts)
            log.warning("%s: create %d ended ambiguously; looking it up by %s", table, posts, field)
            found = await self._find(table, field, value, lookup)
            if found is not None:
                log.info("%s: adopted the record that the ambiguous create wrote", table)
                return CreateResult(found, created=False, attempts=posts)
            if may_still_run(ambiguous):
                raise AmbiguousError(
                    f"{table}: the create may still be running on the instance and the lookup "
                    f"by {field} does not show it yet; call again later with lookup_first=True "
                    f"(the create said: {ambiguous})",
                    **_context(ambiguous),
                ) from ambiguous
            if posts >= limit:
                raise AmbiguousError(
                    f"{table}: {posts} creates ended ambiguously and the lookup by {field} "
                    f"found nothing; call again later with lookup_first=True (the last create "
                    f"said: {ambiguous})",
                    **_context(ambiguous),
                ) from ambiguous

    async def _find(self, table: str, field: str, value: str, lookup: Query) -> Record | None:
        try:
            result = await self.query(table, lookup, limit=1)
        except (TransientError, AmbiguousError) as exc:
            raise AmbiguousError(
                f"{table}: the lookup by {field} that would show whether the record exists "
                f"failed, so nothing was posted; call again later with lookup_first=True "
                f"(the lookup said: {exc})",
                **_context(exc),
            ) from exc
        if not result.records:
            return None
        record = result.records[0]
        if ref_value(record.get(field)) != value:
            raise PermanentError(
                f"{table}: the lookup by {field} returned a record with another {field}: the "
                "instance ignored the condition (no such field, or the user cannot read it), "
                "so duplicates cannot be detected; use a correlation field that exists on the "
                "table and that the integration user can read",
            )
        return record

    # Plumbing.

    def _record(self, decoded: Decoded, method: str, path: str) -> Record:
        record = record_of(decoded, f"{method} {path}", write=is_write(method))
        if isinstance(record, ServiceNowError):
            raise record
        return record

    async def _post_form(self, path: str, form: Mapping[str, str]) -> httpx.Response:
        return await self._send(
            "POST", path, data=dict(form), headers={"Accept": "application/json"}, write=False
        )

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> Decoded:
        write = is_write(method)
        body = payload_json(payload) if payload is not None else None
        response = await self._authorized(method, path, params=params, body=body, write=write)
        outcome = classify_response(
            status_code=response.status_code,
            headers=response.headers,
            content=response.content,
            write=write,
            action=f"{method} {path}",
            now=self._clock.time(),
        )
        if isinstance(outcome, ServiceNowError):
            raise _logged(outcome)
        return outcome

    async def _authorized(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None,
        body: bytes | None,
        write: bool,
        references: bool = True,
    ) -> httpx.Response:
        """Send a request with credentials, renewing an OAuth2 token once on a 401.

        `references`: the request returns records, so it asks for bare reference values if
        the client was told to (a batch asks in each of its sub-requests instead).
        """
        params = dict(params or {})
        if references and self._exclude_reference_link:
            params["sysparm_exclude_reference_link"] = "true"
        renewed = False
        while True:
            auth_headers, marker = await self._auth.headers()
            response = await self._send(
                method,
                path,
                params=params or None,
                content=body,
                headers={**_JSON_HEADERS, **auth_headers},
                write=write,
            )
            if response.status_code == 401 and self._auth.reauthenticates and not renewed:
                # A 401 means the request was not run, so sending it again is safe.
                log.info("%s %s: 401, renewing the OAuth2 token once", method, path)
                self._auth.invalidate(marker)
                renewed = True
                continue
            return response

    async def _send(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        write: bool,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        data: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request, moving to the next endpoint when one cannot be reached.

        Under `probe(endpoint=...)` the request goes to that endpoint and nowhere else.
        """
        action = f"{method} {path}"
        target = _PINNED.get()
        pinned = target is not None
        tries = 0
        while True:
            base = target if target is not None else self._endpoints.current
            started = self._clock.now()
            try:
                response = await self._http.request(
                    method,
                    _url(base + path),
                    params=params,
                    content=content,
                    data=data,
                    headers=headers,
                )
            except httpx.RequestError as exc:
                tries += 1
                error = classify_exception(exc, write=write, action=action)
                if not pinned and endpoint_failed(exc) and self._endpoints.failed(base):
                    log.warning(
                        "%s: endpoint %s failed (%s); moving to %s",
                        action,
                        base,
                        type(exc).__name__,
                        self._endpoints.current,
                    )
                    self._endpoint_changed(base, self._endpoints.current, type(exc).__name__)
                # Nothing reached the instance, so the next endpoint may take it at once.
                if (
                    not pinned
                    and nothing_sent(exc)
                    and endpoint_failed(exc)
                    and tries < len(self._endpoints)
                ):
                    continue
                log.warning("%s", error)
                raise error from exc
            rate_limit = parse_rate_limit(response.headers)
            if rate_limit is not None:
                self._rate_limit = rate_limit
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "%s -> %d in %.3f s (transaction %s)",
                    action,
                    response.status_code,
                    self._clock.now() - started,
                    response.headers.get("x-transaction-id", "-"),
                )
            return response


#: The endpoint a probe is pinned to, for every request made on its behalf (token included).
_PINNED: ContextVar[str | None] = ContextVar("callresilience_pinned_endpoint", default=None)


def _logged(error: ServiceNowError) -> ServiceNowError:
    """Log an error about to be raised: a refusal is the caller's to report, trouble ours."""
    level = logging.INFO if isinstance(error, PermanentError) else logging.WARNING
    log.log(level, "%s", error)
    return error


def _no_record_found(error: PermanentError) -> bool:
    """Whether a 404 means "nothing matched" (older API versions) rather than a bad path."""
    return error.status_code == 404 and (error.sn_message or "").lower() == "no record found"


@functools.lru_cache(maxsize=256)
def _url(text: str) -> httpx.URL:
    """The URL parsed once: a table's path is the same for every create and query."""
    return httpx.URL(text)


def _context(error: ServiceNowError) -> dict[str, Any]:
    return {
        "status_code": error.status_code,
        "sn_message": error.sn_message,
        "sn_detail": error.sn_detail,
        "transaction_id": error.transaction_id,
        "retry_after": error.retry_after,
        "rate_limit": error.rate_limit,
    }
