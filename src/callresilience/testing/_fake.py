"""The FakeServiceNow: an in-memory Table API, Batch API and OAuth token endpoint with faults.

The core (`FakeServiceNow._process`) turns one request into one answer synchronously: it
routes, authenticates, applies rate limits and touches the tables. The async shell around it
(`FakeServiceNow._exchange`) applies the connection-level faults and latency on the injected
clock. Two thin adapters sit on top: `FakeTransport` for httpx in process, and the ASGI app in
`_server.py` for loopback HTTP.

A Batch API request is parsed once in the shell (its sub-requests' tables scope the faults
that apply to it); the core then runs each sub-request through the same path as a request of
its own (`_answer`), without building an HTTP request per sub-request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import http
import json
import math
import random
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from functools import lru_cache
from itertools import starmap
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import parse_qsl, unquote, urlencode

import attrs
import httpx

from .._clock import Clock, SystemClock
from ._encoded_query import parse_encoded_query
from ._faults import (
    BlackHole,
    BrokenOk,
    Decision,
    DropResponse,
    FaultSchedule,
    Hibernating,
    RefuseConnections,
    ServiceUnavailable,
    TransactionCancelled,
)

if TYPE_CHECKING:
    from ._server import LoopbackServer

__all__ = [
    "DEFAULT_REFERENCE_FIELDS",
    "FakeServiceNow",
    "FakeTransport",
    "RecordedRequest",
]

#: Reference fields per table, mapped to the table they point at. A target written
#: `"@field"` is a document-id field whose table is named by `field` of the same record.
DEFAULT_REFERENCE_FIELDS: Mapping[str, Mapping[str, str]] = {
    "interaction": {
        "assigned_to": "sys_user",
        "opened_for": "sys_user",
        "channel_metadata_document": "@channel_metadata_table",
    },
    "sn_openframe_phone_log": {"agent": "sys_user"},
    "awa_work_item": {"assigned_to": "sys_user", "document_id": "@document_table"},
}

_SEEDED_TABLES = ("interaction", "sn_openframe_phone_log", "awa_work_item", "sys_user")
_NUMBER_PREFIXES = {"interaction": "IMS"}
_AGENTS = (
    ("abel.tuter", "Abel", "Tuter"),
    ("beth.anglin", "Beth", "Anglin"),
    ("david.loo", "David", "Loo"),
)
_SYSTEM_FIELDS = (
    "sys_id",
    "sys_created_on",
    "sys_created_by",
    "sys_updated_on",
    "sys_updated_by",
    "sys_mod_count",
)
_TABLE_PATH = re.compile(r"^/api/now(?:/(v1|v2))?/table/([^/]+)(?:/([^/]+))?/?$")
_BATCH_PATH = re.compile(r"^/api/now(?:/v1)?/batch/?$")
_AUTH_HEADERS = ("authorization", "x-sn-apikey")  # what a sub-request takes from its batch
_REASONS = {status.value: status.phrase for status in http.HTTPStatus}
_TABLE_NAME = re.compile(r"[a-z0-9_]+")
_SYS_ID = re.compile(r"[0-9a-f]{32}")
_DEFAULT_LIMIT = 10000
_CANCELLED = "Transaction cancelled: maximum execution time exceeded"
_HIBERNATING_PAGE = (
    "<!DOCTYPE html><html><head><title>Instance Hibernating page</title></head>"
    "<body><h1>Your instance is hibernating</h1>"
    "<p>This developer instance is hibernating due to inactivity. "
    "Sign in to the developer portal to wake it up.</p></body></html>"
)

# Compact JSON, as ServiceNow sends it. One encoder for every answer: `json.dumps` with
# arguments builds a new one per call. The fake only encodes values it built itself from
# parsed JSON and strings, which cannot hold a cycle, so the check for one is skipped.
_JSON = json.JSONEncoder(separators=(",", ":"), check_circular=False)
_JSON_STRING = json.encoder.encode_basestring_ascii  # how `_JSON` writes a string
_JSON_DECODER = json.JSONDecoder()  # what `json.loads` decodes with
_JSON_CONTENT = (("Content-Type", "application/json;charset=UTF-8"),)

Outcome = Literal["answered", "refused", "black_holed", "dropped", "timed_out"]


@attrs.frozen
class RecordedRequest:
    """One request the fake received, as kept in `FakeServiceNow.requests`.

    No header or body is kept, so no secret ever lands in the log.

    Attributes:
        method: The HTTP method.
        path: The URL path.
        query: The raw query string (percent-encoded, as sent).
        table: The table for a Table API request, else None.
        sys_id: The record read, written or created, when there is one.
        status: The status answered, or None when no answer was sent.
        outcome: `"answered"`, `"refused"` (connection refused), `"black_holed"` (never
            answered), `"dropped"` (connection closed without an answer) or `"timed_out"`
            (the client gave up during a latency fault; the instance finished the work later).
        committed: Whether the request changed a table.
        at: When it arrived, on the fake's monotonic clock (a sub-request: when its batch did).
        fault: The name of the fault that shaped the answer, or None.
        batch_id: For a sub-request of a Batch API request, the batch's `batch_request_id`;
            None for every request that arrived on its own (the batch request included).
    """

    method: str
    path: str
    query: str
    table: str | None
    sys_id: str | None
    status: int | None
    outcome: Outcome
    committed: bool
    at: float
    fault: str | None = None
    batch_id: str | None = None

    @property
    def params(self) -> dict[str, str]:
        """The query parameters, decoded (the last value wins)."""
        return dict(parse_qsl(self.query, keep_blank_values=True))


# The fields of a RecordedRequest, in order: logged as a tuple, built when the log is read.
_LogFields = tuple[
    str, str, str, str | None, str | None, int | None, Outcome, bool, float, str | None, str | None
]


# The values built for each request and sub-request (`_Request`, `_Route`, `_Response`,
# `_Result`, `_SubRequest`) are never changed once built, but are not frozen: a frozen attrs
# class sets each field through `object.__setattr__`, which doubles what building one costs.


@attrs.define
class _Request:
    method: str
    path: str
    query: str
    headers: Mapping[str, str]  # names in lower case
    body: bytes
    base_url: str  # scheme://host[:port], for links and Location

    def params(self) -> tuple[tuple[str, str], ...]:
        return _query_params(self.query)

    def param(self, name: str) -> str | None:
        """The first value of query parameter `name`, or None."""
        for key, value in _query_params(self.query):
            if key == name:
                return value
        return None


@lru_cache(maxsize=256)
def _query_params(query: str) -> tuple[tuple[str, str], ...]:
    """The decoded query parameters, in order (cached: a batch repeats the same query)."""
    return tuple(parse_qsl(query, keep_blank_values=True))


@lru_cache(maxsize=64)
def _header_json(name: str, value: str) -> str:
    """A header as a `{"name", "value"}` object, as `_JSON` writes it (cached: most are the
    same in every answer)."""
    return f'{{"name":{_JSON_STRING(name)},"value":{_JSON_STRING(value)}}}'


@lru_cache(maxsize=256)
def _render_options(query: str) -> tuple[tuple[str, ...] | None, bool]:
    """The fields `sysparm_fields` asks for (None: all) and `sysparm_exclude_reference_link`."""
    params = dict(reversed(_query_params(query)))  # the first value of each wins
    wanted = params.get("sysparm_fields")
    names = None if wanted is None else tuple(name.strip() for name in wanted.split(","))
    return names, _truthy(params.get("sysparm_exclude_reference_link"))


@attrs.define
class _Response:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@attrs.frozen
class _Outcome:
    kind: Outcome
    response: _Response | None = None


@attrs.define
class _Route:
    kind: Literal["table", "oauth", "batch", "unknown"]
    version: str | None = None
    table: str | None = None
    sys_id: str | None = None


@attrs.frozen
class _Token:
    user: str
    expires_at: float


@attrs.define
class _Result:
    response: _Response
    committed: bool = False
    sys_id: str | None = None


@attrs.define
class _SubRequest:
    """One sub-request of a batch, ready to run, with the faults decided for it."""

    id: str
    request: _Request
    route: _Route
    decision: Decision
    exclude_headers: bool


@attrs.frozen
class _Batch:
    """A well-formed Batch API request: the sub-requests to run and the ids left out."""

    id: str
    serviced: tuple[_SubRequest, ...]
    unserviced: tuple[str, ...]


@attrs.frozen
class _Malformed:
    """A batch that cannot be read: the 400 to answer."""

    message: str
    detail: str


_NO_FAULT = Decision()


@attrs.define
class _Table:
    name: str
    references: dict[str, str]
    rows: dict[str, dict[str, str]] = attrs.field(factory=dict)
    fields: set[str] = attrs.field(factory=lambda: set(_SYSTEM_FIELDS))
    counter: int = 0


def _stringify(value: object) -> str:
    """Store a JSON value the way ServiceNow returns it: as a string."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict) and "value" in value:
        return _stringify(value["value"])
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


@lru_cache(maxsize=1)
def _utc_stamp(second: int) -> str:
    """A UNIX time as ServiceNow writes it, in UTC (cached: writes come many a second)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() == "true"


@attrs.define(kw_only=True)
class FakeServiceNow:
    """An in-memory ServiceNow instance: Table API, Batch API, OAuth token endpoint and faults.

    With no credentials configured the instance is open. Otherwise a request must carry
    basic auth for `user`/`password`, a bearer token from `/oauth_token.do`, or the
    `x-sn-apikey` header with `api_key`.

    The Batch API (`POST /api/now/v1/batch`, also `/api/now/batch`) takes
    `{"batch_request_id", "rest_requests": [{"id", "method", "url", "headers", "body",
    "exclude_response_headers"}]}` (bodies base64) and answers 200 with
    `{"batch_request_id", "serviced_requests": [{"id", "status_code", "status_text",
    "headers", "body", "execution_time"}], "unserviced_requests": [ids]}`. The outer request
    is authenticated like any other (401, nothing run) and must send JSON (`Accept` and
    `Content-Type`, as a Table API write); a batch that cannot be read (not JSON,
    `batch_request_id` given but not a string (when absent it is echoed as `""`),
    `rest_requests` not a list, an item without a string `id`, `method` and `url`, headers
    that are not a list of `{"name", "value"}` strings, a body that is not base64, a repeated
    id) is answered 400 and nothing runs. The sub-requests run in order, each as a request of
    its own with the batch's credentials (`Authorization`, `x-sn-apikey`; a sub-request's own
    are ignored) and its own other headers, so each is authenticated, counted by the rate
    limits (a denied one answers 429) and commits or fails alone; a URL that is not a Table
    API path (the batch path included) answers the 400 for an unknown resource. Each
    sub-request is logged in `requests` with the batch's id in `batch_id`, then the batch
    request itself (table None, committed when any sub-request committed). Beyond
    `batch_limit`, sub-requests are not run and their ids are listed in
    `unserviced_requests`. Records, sys_ids and numbers come out exactly as if the
    sub-requests had been sent one by one.

    Faults and batches. Faults scheduled with `tables=None` are decided once, for the batch
    request (method POST, no table), and act on it as on any request: a refused or
    black-holed connection, latency (past the client's read timeout the batch runs late and
    its answer is never delivered), and a 503 or hibernation page for the whole batch, with
    nothing run. `DropResponse(commit=True)` runs the batch and drops its answer;
    `DropResponse(commit=False)` and `TransactionCancelled()` run nothing;
    `TransactionCancelled(commit=True)` runs the batch and answers 500; `BrokenOk` runs it and
    breaks its 200. Faults scoped to tables are decided for each sub-request that runs, with
    its method and table, and never for the batch request: a 503, hibernation page,
    `TransactionCancelled`, `BrokenOk` or `ExpireTokens` acts on that sub-request only; a
    `DropResponse` drops the whole batch's answer once every sub-request has run (that one
    committing only with `commit=True`); a refused or black-holed connection stops the whole
    batch before anything runs, and latencies add up to delay the whole batch. When a batch's
    answer is not delivered (dropped or too late), its sub-requests are logged with that
    outcome and no status, as a single request would be.

    Attributes:
        clock: Where time comes from: record timestamps (`time()`), fault windows, token
            expiry and latency (`now()`, `sleep()`). Use `ManualClock` in tests.
        seed: Seeds the fault draws (`random.Random(seed)`) and, separately, the sys_ids.
        user: The basic-auth user name (also the OAuth password-grant user).
        password: The basic-auth password.
        client_id: The OAuth client id; None accepts any client for the password grant.
        client_secret: The OAuth client secret.
        api_key: The value accepted in the `x-sn-apikey` header.
        token_ttl: Access-token lifetime in seconds (ServiceNow's default is 1800).
        strict_tables: Answer 400 "Invalid table" for tables that do not exist; when False,
            create them on first use.
        reference_fields: Reference fields per table, each mapped to the table it points at
            (`"@field"`: the table named by that field of the record). Default:
            `FakeServiceNow.DEFAULT_REFERENCE_FIELDS`.
        accept_client_sys_id: Honour a `sys_id` in a POST body (unverified on real instances,
            so off by default).
        batch_limit: The most sub-requests run per Batch API request; the rest are listed in
            `unserviced_requests` and not run. None for no limit.
    """

    DEFAULT_REFERENCE_FIELDS: ClassVar[Mapping[str, Mapping[str, str]]] = DEFAULT_REFERENCE_FIELDS

    clock: Clock = attrs.field(factory=SystemClock)
    seed: int = 0
    user: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = attrs.field(default=None, repr=False)
    api_key: str | None = attrs.field(default=None, repr=False)
    token_ttl: float = 1800.0
    strict_tables: bool = True
    reference_fields: Mapping[str, Mapping[str, str]] = DEFAULT_REFERENCE_FIELDS
    accept_client_sys_id: bool = False
    batch_limit: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(0))
    )
    faults: FaultSchedule = attrs.field(init=False)
    _rng: random.Random = attrs.field(init=False, repr=False)
    _ids: random.Random = attrs.field(init=False, repr=False)
    # Transaction ids of batch answers: drawn apart from `_ids`, so that a batch leaves the
    # sys_ids of later records as the same requests sent one by one would.
    _batch_ids: random.Random = attrs.field(init=False, repr=False)
    _tables: dict[str, _Table] = attrs.field(init=False, factory=dict, repr=False)
    _requests: list[RecordedRequest] = attrs.field(init=False, factory=list, repr=False)
    # Requests logged since `requests` was last read, each as the fields of its
    # RecordedRequest: a batch logs a hundred sub-requests, and the log is seldom read.
    _unread: list[_LogFields] = attrs.field(init=False, factory=list, repr=False)
    _tokens: dict[str, _Token] = attrs.field(init=False, factory=dict, repr=False)
    _refresh_tokens: dict[str, str] = attrs.field(init=False, factory=dict, repr=False)
    _held: set[asyncio.Future[None]] = attrs.field(init=False, factory=set, repr=False)
    _servers: set[LoopbackServer] = attrs.field(init=False, factory=set, repr=False)

    def __attrs_post_init__(self) -> None:
        self.faults = FaultSchedule(self.clock)
        self._rng = random.Random(self.seed)
        self._ids = random.Random(f"sys_id:{self.seed}")
        self._batch_ids = random.Random(f"batch:{self.seed}")
        for name in _SEEDED_TABLES:
            self.create_table(name)
        for user_name, first, last in _AGENTS:
            self.insert(
                "sys_user",
                {
                    "user_name": user_name,
                    "first_name": first,
                    "last_name": last,
                    "name": f"{first} {last}",
                    "email": f"{user_name}@example.com",
                    "active": True,
                },
            )

    # -- tables ------------------------------------------------------------------------------

    @property
    def tables(self) -> tuple[str, ...]:
        """The names of the tables that exist."""
        return tuple(self._tables)

    def create_table(self, name: str, *, references: Mapping[str, str] | None = None) -> None:
        """Create an empty table (no error if it exists).

        Args:
            name: The table name (`[a-z0-9_]+`).
            references: Its reference fields; default: from `reference_fields`.

        Raises:
            ValueError: If the name is not a valid table name.
        """
        if not _TABLE_NAME.fullmatch(name):
            raise ValueError(f"invalid table name {name!r}: use lower case, digits and _")
        if name not in self._tables:
            refs = references if references is not None else self.reference_fields.get(name, {})
            self._tables[name] = _Table(name, dict(refs))

    def records(self, table: str) -> list[dict[str, str]]:
        """Return copies of every record in `table`, in insertion order.

        Values are stored strings; reference fields hold the bare sys_id.

        Raises:
            KeyError: If the table does not exist.
        """
        return [dict(row) for row in self._tables[table].rows.values()]

    def get(self, table: str, sys_id: str) -> dict[str, str] | None:
        """Return a copy of one record, or None."""
        row = self._tables[table].rows.get(sys_id)
        return None if row is None else dict(row)

    def insert(self, table: str, fields: Mapping[str, object]) -> dict[str, str]:
        """Insert a record directly (no faults, no request log) and return a copy of it.

        Args:
            table: An existing table (created on demand unless `strict_tables`).
            fields: Field values; they are stored as strings, as ServiceNow does.

        Raises:
            KeyError: If the table does not exist and `strict_tables` is set.
        """
        return dict(self._insert(self._table(table), fields, "admin"))

    def _table(self, name: str) -> _Table:
        if name not in self._tables and not self.strict_tables:
            self.create_table(name)
        return self._tables[name]

    def _timestamp(self) -> str:
        return _utc_stamp(math.floor(self.clock.time()))

    def _new_id(self) -> str:
        return f"{self._ids.getrandbits(128):032x}"

    def _insert(self, table: _Table, fields: Mapping[str, object], user: str) -> dict[str, str]:
        row = {k: v if type(v) is str else _stringify(v) for k, v in fields.items()}
        sys_id = row.get("sys_id", "") if self.accept_client_sys_id else ""
        if not (sys_id and _SYS_ID.fullmatch(sys_id)) or sys_id in table.rows:
            sys_id = self._new_id()
        stamp = self._timestamp()
        table.counter += 1
        row.update(
            sys_id=sys_id,
            sys_created_on=stamp,
            sys_created_by=user,
            sys_updated_on=stamp,
            sys_updated_by=user,
            sys_mod_count="0",
        )
        prefix = _NUMBER_PREFIXES.get(table.name)
        if prefix and not row.get("number"):
            row["number"] = f"{prefix}{table.counter:07d}"
        table.rows[sys_id] = row
        table.fields.update(row)
        return row

    def _update(
        self, table: _Table, sys_id: str, fields: Mapping[str, object], user: str
    ) -> dict[str, str]:
        row = table.rows[sys_id]
        for key, value in fields.items():
            if key not in _SYSTEM_FIELDS:
                row[key] = value if type(value) is str else _stringify(value)
        row.update(
            sys_updated_on=self._timestamp(),
            sys_updated_by=user,
            sys_mod_count=str(int(row.get("sys_mod_count", "0")) + 1),
        )
        table.fields.update(fields)  # the row's other names were known at its insert
        return row

    # -- request log and tokens -----------------------------------------------------------------

    @property
    def requests(self) -> tuple[RecordedRequest, ...]:
        """Every request received so far, in order of completion.

        The sub-requests of a batch come in their order, just before the batch request.
        """
        if self._unread:
            self._requests += [RecordedRequest(*fields) for fields in self._unread]
            self._unread.clear()
        return tuple(self._requests)

    def clear_requests(self) -> None:
        """Forget the request log."""
        self._requests.clear()
        self._unread.clear()

    def expire_tokens(self, *, refresh_tokens: bool = False) -> None:
        """Invalidate every access token now (and, if asked, every refresh token)."""
        self._tokens.clear()
        if refresh_tokens:
            self._refresh_tokens.clear()

    def release_black_holes(self) -> None:
        """Close every black-holed request without an answer."""
        for future in list(self._held):
            if not future.done():
                future.set_result(None)

    # -- the three ways in ----------------------------------------------------------------------

    def transport(self) -> FakeTransport:
        """Return an httpx transport that talks to this fake in process.

        Use it as `httpx.AsyncClient(transport=fake.transport(), base_url=...)`; the base URL
        only shapes the links and `Location` headers in answers.
        """
        return FakeTransport(self)

    @contextlib.asynccontextmanager
    async def serve(self, *, port: int = 0) -> AsyncIterator[str]:
        """Serve this fake over real HTTP on 127.0.0.1 (needs uvicorn: the `sim` extra).

        Args:
            port: The TCP port; 0 picks a free one.

        Yields:
            The base URL, `http://127.0.0.1:PORT`.

        Raises:
            RuntimeError: If uvicorn is not installed.
        """
        from ._server import LoopbackServer  # noqa: PLC0415 (uvicorn is optional)

        server = LoopbackServer(self, port=port)
        await server.start()
        try:
            yield server.base_url
        finally:
            await server.stop()

    async def settle(self) -> None:
        """Make every served listener follow the fault schedule at this very moment.

        A server checks the schedule every few milliseconds and at every change to it; after
        moving a `ManualClock` into or out of a `RefuseConnections` window, await this before
        connecting so the listening socket is already closed (or open again).
        """
        for server in list(self._servers):
            await server.reconcile()

    # -- the async shell -------------------------------------------------------------------------

    async def _exchange(
        self,
        request: _Request,
        *,
        read_timeout: float | None,
        interrupt: Callable[[], Awaitable[None]] | None,
        spawn: Callable[[Coroutine[Any, Any, None]], None] | None,
    ) -> _Outcome:
        """Apply connection faults and latency, then process the request.

        Args:
            request: The request.
            read_timeout: The client's read timeout, when the caller knows it.
            interrupt: An extra event that ends a black hole (e.g. the client went away).
            spawn: Runs the rest of a request whose client timed out during latency.
        """
        at = self.clock.now()
        route = _route(request)
        decision = self.faults.decide(method=request.method, table=route.table, rng=self._rng)
        batch: _Batch | _Malformed | None = None
        if route.kind == "batch" and request.method == "POST":
            batch = self._plan_batch(request)
            if isinstance(batch, _Batch) and batch.serviced:
                decision = _for_batch(decision, batch)
        if isinstance(decision.connection, RefuseConnections):
            self._log(
                request,
                route=route,
                at=at,
                outcome="refused",
                committed=False,
                sys_id=None,
                fault=decision.connection,
            )
            return _Outcome("refused")
        if isinstance(decision.connection, BlackHole):
            # Logged on arrival: nothing that happens later changes what the client saw.
            self._log(
                request,
                route=route,
                at=at,
                outcome="black_holed",
                committed=False,
                sys_id=None,
                fault=decision.connection,
            )
            timed_out = await self._hold(read_timeout, interrupt)
            return _Outcome("timed_out" if timed_out else "black_holed")
        if decision.latency > 0:
            if read_timeout is not None and decision.latency > read_timeout:
                await self.clock.sleep(read_timeout)
                rest = self._late(
                    request, route, decision, at, decision.latency - read_timeout, batch=batch
                )
                if spawn is None:
                    rest.close()
                else:
                    spawn(rest)
                return _Outcome("timed_out")
            await self.clock.sleep(decision.latency)
        return self._process(request, route, decision, at, batch=batch)

    async def _late(
        self,
        request: _Request,
        route: _Route,
        decision: Decision,
        at: float,
        rest: float,
        *,
        batch: _Batch | _Malformed | None,
    ) -> None:
        await self.clock.sleep(rest)
        self._process(request, route, decision, at, delivered=False, batch=batch)

    async def _hold(
        self, read_timeout: float | None, interrupt: Callable[[], Awaitable[None]] | None
    ) -> bool:
        """Wait for a release, an interrupt or the read timeout; return True on timeout."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._held.add(future)
        waiters: list[asyncio.Task[None]] = [asyncio.ensure_future(future)]
        if interrupt is not None:
            waiters.append(asyncio.ensure_future(interrupt()))
        timer = None
        if read_timeout is not None:
            timer = asyncio.ensure_future(self.clock.sleep(read_timeout))
            waiters.append(timer)
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._held.discard(future)
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        return timer is not None and timer in done and future not in done

    # -- the sync core ---------------------------------------------------------------------------

    def _process(
        self,
        request: _Request,
        route: _Route,
        decision: Decision,
        at: float,
        *,
        delivered: bool = True,
        batch: _Batch | _Malformed | None = None,
    ) -> _Outcome:
        """Answer one request that reached the instance, and log it."""
        if batch is not None:
            return self._process_batch(request, route, decision, at, batch, delivered=delivered)
        result, fault = self._answer(request, route, decision)
        outcome = _Outcome("answered", result.response)
        if isinstance(fault, DropResponse):
            outcome = _Outcome("dropped")
        if not delivered:
            outcome = _Outcome("timed_out")
        self._log(
            request,
            route=route,
            at=at,
            outcome=outcome.kind,
            status=None if outcome.response is None else outcome.response.status,
            committed=result.committed,
            sys_id=result.sys_id,
            fault=fault,
        )
        return outcome

    def _answer(
        self, request: _Request, route: _Route, decision: Decision, user: str | None = None
    ) -> tuple[_Result, object]:
        """The instance stage, then the request itself; also runs each sub-request of a batch.

        `user` is who the request acts as when that is known already (a sub-request with the
        batch's credentials); None authenticates it.
        """
        if decision.instance is not None:
            return _Result(self._unavailable(decision.instance)), decision.instance
        if decision.expire_tokens:
            self.expire_tokens()
        return self._handle(request, route, decision, user)

    def _unavailable(
        self, fault: Hibernating | ServiceUnavailable, ids: random.Random | None = None
    ) -> _Response:
        if isinstance(fault, Hibernating):
            return _Response(
                200, (("Content-Type", "text/html;charset=UTF-8"),), _HIBERNATING_PAGE.encode()
            )
        headers = () if fault.retry_after is None else (("Retry-After", str(fault.retry_after)),)
        return self._error(
            503,
            "Service Unavailable",
            "The instance is temporarily unavailable; try again later.",
            headers,
            ids=ids,
        )

    # -- the Batch API ---------------------------------------------------------------------------

    def _plan_batch(self, request: _Request) -> _Batch | _Malformed:
        """Read a batch and decide the table-scoped faults of each sub-request that will run.

        Pure but for the fault draws; nothing runs and nothing is logged here.
        """
        try:
            payload = _loads(request.body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            payload = None
        if not isinstance(payload, dict):
            return _Malformed("Exception while reading request", "The payload is not valid JSON.")
        batch_id = payload.get("batch_request_id", "")
        items = payload.get("rest_requests")
        if not isinstance(batch_id, str):
            return _Malformed("Invalid batch request", "batch_request_id must be a string")
        if not isinstance(items, list):
            return _Malformed("Invalid batch request", "rest_requests must be a list")
        parsed: list[tuple[str, str, str, dict[str, str], bytes, bool]] = []
        seen: set[str] = set()
        for index, item in enumerate(items):
            read = _read_item(item, seen)
            if isinstance(read, str):
                return _Malformed("Invalid batch request", f"rest_requests[{index}]: {read}")
            parsed.append(read)
        limit = len(parsed) if self.batch_limit is None else self.batch_limit
        auth = {k: v for k in _AUTH_HEADERS if (v := request.headers.get(k)) is not None}
        # Without table-scoped faults there is nothing to decide (and nothing to draw).
        scoped = any(entry.tables is not None for entry in self.faults.entries)
        targets: dict[str, tuple[str, str, _Route]] = {}  # a batch often repeats a URL
        serviced: list[_SubRequest] = []
        for ident, method, url, headers, body, exclude in parsed[:limit]:
            target = targets.get(url)
            if target is None:
                target = targets[url] = _sub_target(url)
            path, query, route = target
            headers.update(auth)
            sub = _Request(method, path, query, headers, body, request.base_url)
            decision = _NO_FAULT
            if scoped and route.kind == "table":
                decision = self.faults.decide(
                    method=method, table=route.table, rng=self._rng, table_scoped_only=True
                )
            serviced.append(_SubRequest(ident, sub, route, decision, exclude))
        unserviced = tuple(item[0] for item in parsed[limit:])
        return _Batch(batch_id, tuple(serviced), unserviced)

    def _process_batch(
        self,
        request: _Request,
        route: _Route,
        decision: Decision,
        at: float,
        batch: _Batch | _Malformed,
        *,
        delivered: bool,
    ) -> _Outcome:
        """Answer a batch that reached the instance, and log its sub-requests, then itself."""
        ran: list[tuple[_SubRequest, _Result, object]] = []
        fault: object = decision.instance
        if decision.instance is not None:
            response = self._unavailable(decision.instance, self._batch_ids)
        else:
            if decision.expire_tokens:
                self.expire_tokens()
            response, fault = self._run_batch(request, decision, batch, ran)
        dropping = next((f for _, _, f in ran if isinstance(f, DropResponse)), None)
        if dropping is not None and not isinstance(fault, DropResponse):
            fault = dropping  # a sub-request's drop loses the whole answer
        kind: Outcome = "answered"
        if not delivered:
            kind = "timed_out"
        elif isinstance(fault, DropResponse):
            kind = "dropped"
        batch_id = batch.id if isinstance(batch, _Batch) else None
        answered = kind == "answered"
        for sub, result, sub_fault in ran:
            self._log(
                sub.request,
                route=sub.route,
                at=at,
                outcome=kind,
                status=result.response.status if answered else None,
                committed=result.committed,
                sys_id=result.sys_id,
                fault=sub_fault,
                batch_id=batch_id,
            )
        committed = any(result.committed for _, result, _ in ran)
        self._log(
            request,
            route=route,
            at=at,
            outcome=kind,
            status=response.status if answered else None,
            committed=committed,
            sys_id=None,
            fault=fault,
        )
        return _Outcome(kind, response if answered else None)

    def _run_batch(
        self,
        request: _Request,
        decision: Decision,
        batch: _Batch | _Malformed,
        ran: list[tuple[_SubRequest, _Result, object]],
    ) -> tuple[_Response, object]:
        """Authenticate and check the batch, run its sub-requests (appended to `ran`), answer."""
        ids = self._batch_ids
        user = self._authenticate(request)
        if user is None:
            return self._unauthenticated(ids), None
        problem = _media_problem(request)
        if problem is not None:
            return self._error(*problem, ids=ids), None
        if isinstance(batch, _Malformed):
            return self._error(400, batch.message, batch.detail, ids=ids), None
        fault = decision.processing
        if isinstance(fault, DropResponse) and not fault.commit:
            return self._error(500, "dropped", None, ids=ids), fault
        if isinstance(fault, TransactionCancelled) and not fault.commit:
            return self._cancelled(ids), fault
        # Each sub-request carries the batch's credentials, so it acts as the batch's user. Only
        # a bearer token is checked again for each: an ExpireTokens fault may revoke it midway.
        scheme = request.headers.get("authorization", "").partition(" ")[0]
        sub_user = None if scheme.lower() == "bearer" else user
        serviced: list[str] = []
        now = self.clock.now
        for sub in batch.serviced:
            start = now()
            result, sub_fault = self._answer(sub.request, sub.route, sub.decision, sub_user)
            ran.append((sub, result, sub_fault))
            milliseconds = round((now() - start) * 1000)
            serviced.append(_serviced_json(sub, result.response, milliseconds))
        body = _batch_answer_json(batch.id, serviced, batch.unserviced)
        response = self._json_response(200, body, ids=ids)
        if isinstance(fault, TransactionCancelled):
            response = self._cancelled(ids)
        elif isinstance(fault, BrokenOk):
            response = _broken(response)
        return response, fault

    # -- one request -----------------------------------------------------------------------------

    def _handle(
        self, request: _Request, route: _Route, decision: Decision, user: str | None
    ) -> tuple[_Result, object]:
        table = route.table
        if route.kind == "batch":  # a POST went to _process_batch
            return _Result(self._error(405, "Method not Supported", None)), None
        if route.kind == "oauth":
            if request.method != "POST":
                return _Result(self._error(405, "Method not Supported", None)), None
            admitted: _Response | None = None
            extra: tuple[tuple[str, str], ...] = ()
            acting = ""  # the token endpoint checks its own credentials
        elif table is not None:
            admitted, extra, acting = self._admit(request, table, user)
        else:
            error = self._error(400, "The resource you requested is not part of the API.", " ")
            return _Result(error), None
        if admitted is not None:
            return _Result(admitted), None
        fault = decision.processing
        if isinstance(fault, DropResponse) and not fault.commit:
            return _Result(self._error(500, "dropped", None)), fault
        if isinstance(fault, TransactionCancelled) and not fault.commit:
            return _Result(self._cancelled()), fault
        if table is None:
            result = self._oauth_token(request)
        else:
            result = self._table_operation(request, route, table, acting)
        if extra:
            result = attrs.evolve(result, response=_with_headers(result.response, extra))
        if isinstance(fault, TransactionCancelled):
            result = attrs.evolve(result, response=self._cancelled())
        elif isinstance(fault, BrokenOk):
            if result.response.status in (200, 201) and result.response.body:
                result = attrs.evolve(result, response=_broken(result.response))
            else:
                fault = None
        return result, fault

    def _admit(
        self, request: _Request, table: str, user: str | None
    ) -> tuple[_Response | None, tuple[tuple[str, str], ...], str]:
        """Authenticate (unless `user` is known), check the table and count the rate limit.

        None for the response means go ahead, with the extra headers, as the user returned.
        """
        if user is None:
            user = self._authenticate(request)
            if user is None:
                return self._unauthenticated(), (), ""
        # A table that exists was created with a valid name.
        if table not in self._tables and (self.strict_tables or not _TABLE_NAME.fullmatch(table)):
            return (
                self._error(400, f"Invalid table {table}", f"Table {table} does not exist"),
                (),
                user,
            )
        verdict = self.faults.check_rate_limits(method=request.method, table=table)
        if verdict is None:
            return None, (), user
        headers = tuple(verdict.headers())
        if not verdict.allowed:
            return self._error(429, "Rate limit exceeded", verdict.detail(), headers), (), user
        return None, headers, user

    def _authenticate(self, request: _Request) -> str | None:
        """Return the user the request acts as, or None when it must be refused."""
        open_instance = self.user is None and self.api_key is None and self.client_id is None
        authorization = request.headers.get("authorization", "")
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer":
            token = self._tokens.get(credentials.strip())
            if token is not None and self.clock.now() < token.expires_at:
                return token.user
            return "admin" if open_instance else None
        if scheme.lower() == "basic" and self.user is not None:
            name, password = _basic(credentials)
            if _same(name, self.user) and _same(password, self.password or ""):
                return self.user
            return None
        api_key = request.headers.get("x-sn-apikey")
        if api_key is not None and self.api_key is not None:
            return "api_key" if _same(api_key, self.api_key) else None
        return "admin" if open_instance else None

    def _oauth_token(self, request: _Request) -> _Result:
        form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        authorization = request.headers.get("authorization", "")
        if client_id is None and authorization.lower().startswith("basic "):
            client_id, client_secret = _basic(authorization[6:])
        client_ok = self.client_id is None or (
            _same(client_id or "", self.client_id)
            and _same(client_secret or "", self.client_secret or "")
        )
        open_instance = self.user is None and self.api_key is None and self.client_id is None
        grant = form.get("grant_type")
        user: str | None = None
        if grant == "password":
            name, password = form.get("username", ""), form.get("password", "")
            if self.user is None or (
                _same(name, self.user) and _same(password, self.password or "")
            ):
                user = name or "admin"
        elif grant == "client_credentials":
            if self.client_id is not None or open_instance:
                user = "oauth_client"
        elif grant == "refresh_token":
            user = self._refresh_tokens.get(form.get("refresh_token", ""))
        else:
            return _Result(
                self._json(
                    400,
                    {"error_description": "access_denied", "error": "unsupported_grant_type"},
                    logged_in=False,
                )
            )
        if not client_ok or user is None:
            return _Result(
                self._json(
                    401,
                    {"error_description": "access_denied", "error": "server_error"},
                    logged_in=False,
                )
            )
        access, refresh = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
        self._tokens[access] = _Token(user, self.clock.now() + self.token_ttl)
        self._refresh_tokens[refresh] = user
        body = {
            "access_token": access,
            "refresh_token": refresh,
            "scope": "useraccount",
            "token_type": "Bearer",
            "expires_in": int(self.token_ttl),
        }
        return _Result(self._json(200, body))

    def _table_operation(
        self, request: _Request, route: _Route, table_name: str, user: str
    ) -> _Result:
        table = self._table(table_name)
        method, sys_id = request.method, route.sys_id
        if method == "GET" and sys_id is None:
            return self._list(request, route, table)
        if method == "GET" and sys_id is not None:
            row = table.rows.get(sys_id)
            if row is None:
                return _Result(self._not_found())
            body = {"result": self._render(request, table, row)}
            return _Result(self._json(200, body), False, sys_id)
        if method == "DELETE" and sys_id is not None:
            if table.rows.pop(sys_id, None) is None:
                return _Result(self._not_found())
            return _Result(self._empty(204), True, sys_id)
        if (method == "POST" and sys_id is None) or (
            method in ("PUT", "PATCH") and sys_id is not None
        ):
            return self._write(request, table, sys_id, user)
        return _Result(
            self._error(405, "Method not Supported", f"{method} method not supported for API")
        )

    def _write(self, request: _Request, table: _Table, sys_id: str | None, user: str) -> _Result:
        problem = _media_problem(request)
        if problem is not None:
            return _Result(self._error(*problem))
        try:
            fields = _loads(request.body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            fields = None
        if not isinstance(fields, dict):
            return _Result(
                self._error(
                    400, "Exception while reading request", "The payload is not valid JSON."
                )
            )
        quiet = _truthy(request.headers.get("x-no-response-body"))
        if sys_id is None:
            row = self._insert(table, fields, user)
            location = f"{request.base_url}/api/now/table/{table.name}/{row['sys_id']}"
            response = self._json(
                201,
                None if quiet else {"result": self._render(request, table, row)},
                extra=(("Location", location),),
            )
            return _Result(response, True, row["sys_id"])
        if sys_id not in table.rows:
            return _Result(self._not_found())
        row = self._update(table, sys_id, fields, user)
        body = None if quiet else {"result": self._render(request, table, row)}
        return _Result(self._json(200, body), True, sys_id)

    def _list(self, request: _Request, route: _Route, table: _Table) -> _Result:
        params = request.params()
        text = request.param("sysparm_query")
        if text is None:
            # Name/value pairs filter only when there is no sysparm_query.
            pairs = [
                f"{k}={v}" for k, v in params if not k.startswith("sysparm_") and k in table.fields
            ]
            text = "^".join(pairs) if pairs else None
        rows: list[Mapping[str, str]] = list(table.rows.values())
        if text is not None:
            rows = parse_encoded_query(text, fields=sorted(table.fields)).apply(rows)
        total = len(rows)
        offset = _int(request.param("sysparm_offset"), 0)
        limit = _int(request.param("sysparm_limit"), _DEFAULT_LIMIT)
        page = rows[offset : offset + limit] if limit > 0 else []
        if not page and text is not None and route.version != "v2":
            return _Result(self._error(404, "No Record found", "Records not found"))
        headers: list[tuple[str, str]] = [("X-Total-Count", str(total))]
        if not _truthy(request.param("sysparm_suppress_pagination_header")):
            headers.append(("Link", _links(request, offset, limit, total)))
        result = [self._render(request, table, row) for row in page]
        return _Result(self._json(200, {"result": result}, extra=tuple(headers)))

    def _render(
        self, request: _Request, table: _Table, row: Mapping[str, str]
    ) -> dict[str, object]:
        wanted, bare = _render_options(request.query)
        names = list(row) if wanted is None else [name for name in wanted if name in row]
        out: dict[str, object] = {}
        for name in names:
            value = row[name]
            target = table.references.get(name)
            if target is not None and target.startswith("@"):
                target = row.get(target[1:]) or None
            if target is None or bare or value == "":
                out[name] = value
            else:
                link = f"{request.base_url}/api/now/table/{target}/{value}"
                out[name] = {"link": link, "value": value}
        return out

    # -- answers ---------------------------------------------------------------------------------

    def _headers(
        self, logged_in: bool = True, ids: random.Random | None = None
    ) -> tuple[tuple[str, str], ...]:
        transaction = (ids or self._ids).getrandbits(48)
        return (
            ("X-Is-Logged-In", "true" if logged_in else "false"),
            ("X-Transaction-ID", f"{transaction:012x}"),
            ("Pragma", "no-store,no-cache"),
            ("Cache-Control", "no-cache,no-store,must-revalidate,max-age=-1"),
            ("Expires", "0"),
        )

    def _json(
        self,
        status: int,
        payload: object,
        *,
        extra: tuple[tuple[str, str], ...] = (),
        logged_in: bool = True,
        ids: random.Random | None = None,
    ) -> _Response:
        if payload is None:
            return _Response(status, self._headers(logged_in, ids) + extra, b"")
        body = _JSON.encode(payload).encode()
        return self._json_response(status, body, extra=extra, logged_in=logged_in, ids=ids)

    def _json_response(
        self,
        status: int,
        body: bytes,
        *,
        extra: tuple[tuple[str, str], ...] = (),
        logged_in: bool = True,
        ids: random.Random | None = None,
    ) -> _Response:
        """A JSON answer whose body is encoded already."""
        return _Response(status, _JSON_CONTENT + self._headers(logged_in, ids) + extra, body)

    def _empty(self, status: int) -> _Response:
        return _Response(status, self._headers(), b"")

    def _error(
        self,
        status: int,
        message: str,
        detail: str | None,
        extra: tuple[tuple[str, str], ...] = (),
        *,
        ids: random.Random | None = None,
    ) -> _Response:
        body = {"error": {"message": message, "detail": detail}, "status": "failure"}
        return self._json(status, body, extra=extra, logged_in=status != 401, ids=ids)

    def _unauthenticated(self, ids: random.Random | None = None) -> _Response:
        return self._error(
            401,
            "User Not Authenticated",
            "Required to provide Auth information",
            (("WWW-Authenticate", 'BASIC realm="Service-now"'),),
            ids=ids,
        )

    def _not_found(self) -> _Response:
        return self._error(
            404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
        )

    def _cancelled(self, ids: random.Random | None = None) -> _Response:
        return self._error(500, _CANCELLED, f"{_CANCELLED}. Check logs for error trace.", ids=ids)

    def _log(
        self,
        request: _Request,
        *,
        route: _Route,
        at: float,
        outcome: Outcome,
        status: int | None = None,
        committed: bool,
        sys_id: str | None,
        fault: object,
        batch_id: str | None = None,
    ) -> None:
        """Log a request; `requests` builds its RecordedRequest when the log is read."""
        self._unread.append(
            (
                request.method,
                request.path,
                request.query,
                route.table,
                sys_id or route.sys_id,
                status,
                outcome,
                committed,
                at,
                None if fault is None else type(fault).__name__,
                batch_id,
            )
        )


def _table_route(path: str) -> _Route | None:
    """The route of a Table API path, else None."""
    match = _TABLE_PATH.match(path)
    if match is None:
        return None
    return _Route("table", match.group(1), match.group(2), match.group(3))


def _route(request: _Request) -> _Route:
    if request.path.rstrip("/") == "/oauth_token.do":
        return _Route("oauth")
    route = _table_route(request.path)
    if route is None:
        return _Route("batch" if _BATCH_PATH.match(request.path) else "unknown")
    return route


def _sub_target(url: str) -> tuple[str, str, _Route]:
    """The path, query and route of a sub-request's URL (only Table API paths are known)."""
    path, _, query = url.partition("?")
    if "%" in path:
        path = unquote(path)
    return path, query, _table_route(path) or _Route("unknown")


def _read_item(
    item: object, seen: set[str]
) -> tuple[str, str, str, dict[str, str], bytes, bool] | str:
    """Read one entry of `rest_requests`; a string says what is wrong with it."""
    if not isinstance(item, dict):
        return "not an object"
    ident, method, url = item.get("id"), item.get("method"), item.get("url")
    if not (isinstance(ident, str) and isinstance(method, str) and isinstance(url, str)):
        return "id, method and url must be strings"
    if ident in seen:
        return f"id {ident!r} is repeated"
    seen.add(ident)
    raw_headers = item.get("headers")
    if raw_headers is None:
        raw_headers = []
    if not isinstance(raw_headers, list):
        return "headers must be a list"
    headers: dict[str, str] = {}
    for header in raw_headers:
        name = header.get("name") if isinstance(header, dict) else None
        value = header.get("value") if isinstance(header, dict) else None
        if not (isinstance(name, str) and isinstance(value, str)):
            return "each header needs a string name and value"
        name = name.lower()
        if name not in _AUTH_HEADERS:
            headers[name] = value
    encoded = item.get("body")
    if encoded is None:
        encoded = ""
    if not isinstance(encoded, str):
        return "body must be a base64 string"
    try:
        body = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return "body is not valid base64"
    exclude = item.get("exclude_response_headers", False)
    if not isinstance(exclude, bool):
        return "exclude_response_headers must be a boolean"
    return ident, method.upper(), url, headers, body, exclude


def _for_batch(decision: Decision, batch: _Batch) -> Decision:
    """Add the connection faults and latency of the sub-requests to the batch's decision."""
    connection = decision.connection
    latency = decision.latency
    for sub in batch.serviced:
        connection = connection or sub.decision.connection
        latency += sub.decision.latency
    if connection is decision.connection and latency == decision.latency:
        return decision
    return attrs.evolve(decision, connection=connection, latency=latency)


def _serviced_json(sub: _SubRequest, answer: _Response, milliseconds: int) -> str:
    """One entry of `serviced_requests`, written as `_JSON` writes the same object.

    That object is `{"id", "status_code", "status_text", "headers": [{"name", "value"}],
    "body" (base64), "execution_time"}`; writing it directly spares the generic encoder the
    dozens of small objects a batch's answer holds.
    """
    headers = "" if sub.exclude_headers else ",".join(starmap(_header_json, answer.headers))
    return (
        f'{{"id":{_JSON_STRING(sub.id)},"status_code":{answer.status:d},'
        f'"status_text":{_JSON_STRING(_REASONS.get(answer.status, ""))},"headers":[{headers}],'
        f'"body":"{base64.b64encode(answer.body).decode("ascii")}",'
        f'"execution_time":{milliseconds:d}}}'
    )


def _batch_answer_json(batch_id: str, serviced: list[str], unserviced: Iterable[str]) -> bytes:
    """The Batch API answer from its `serviced_requests` entries, as `_JSON` writes it."""
    unserviced_json = ",".join([_JSON_STRING(ident) for ident in unserviced])
    return (
        f'{{"batch_request_id":{_JSON_STRING(batch_id)},'
        f'"serviced_requests":[{",".join(serviced)}],'
        f'"unserviced_requests":[{unserviced_json}]}}'
    ).encode()


def _loads(body: bytes) -> object:
    """`json.loads(body)`, without its encoding detection when the body is a UTF-8 object.

    `json.loads` takes bytes as UTF-8 unless they start with a byte-order mark or a NUL in the
    first two bytes (UTF-16 or UTF-32); a body that starts with `{` and no NUL after it is
    neither, and is decoded here as `json.loads` would.
    """
    if body[:1] == b"{" and body[1:2] != b"\x00":
        return _JSON_DECODER.decode(body.decode("utf-8", "surrogatepass"))
    return json.loads(body)


def _basic(credentials: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    name, _, password = decoded.partition(":")
    return name, password


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _int(value: str | None, default: int) -> int:
    try:
        return max(0, int(value)) if value is not None else default
    except ValueError:
        return default


def _media_problem(request: _Request) -> tuple[int, str, str] | None:
    """POST, PUT and PATCH need both Accept and Content-Type, and JSON for both."""
    return _media_types_problem(request.headers.get("accept"), request.headers.get("content-type"))


@lru_cache(maxsize=64)
def _media_types_problem(
    accept: str | None, content_type: str | None
) -> tuple[int, str, str] | None:
    """What `_media_problem` answers for these headers (cached: clients repeat the same two)."""
    if not accept or not content_type:
        return (400, "Invalid request", "Both Accept and Content-Type headers are required")
    if not any(
        part.split(";")[0].strip() in ("*/*", "application/*", "application/json")
        for part in accept.split(",")
    ):
        return (406, "Not Acceptable", f"Cannot produce {accept}")
    if content_type.split(";")[0].strip().lower() != "application/json":
        return (415, "Unsupported Media Type", f"Cannot consume {content_type}")
    return None


def _links(request: _Request, offset: int, limit: int, total: int) -> str:
    def link(rel: str, at: int) -> str:
        params = [
            (k, v) for k, v in request.params() if k not in ("sysparm_offset", "sysparm_limit")
        ]
        params += [("sysparm_offset", str(at)), ("sysparm_limit", str(limit))]
        return f'<{request.base_url}{request.path}?{urlencode(params)}>;rel="{rel}"'

    step = max(limit, 1)
    last = max(0, (total - 1) // step * step)
    parts = [link("first", 0)]
    if offset > 0:
        parts.append(link("prev", max(0, offset - step)))
    if offset + step < total:
        parts.append(link("next", offset + step))
    parts.append(link("last", last))
    return ",".join(parts)


def _with_headers(response: _Response, extra: Iterable[tuple[str, str]]) -> _Response:
    extra = tuple(extra)
    return attrs.evolve(response, headers=response.headers + extra) if extra else response


def _broken(response: _Response) -> _Response:
    """Cut the JSON in the middle of the result and append the cancellation error, as seen."""
    text = response.body.decode()
    cut = text[: max(len('{"result":'), len(text) // 2)]
    tail = _JSON.encode(
        {"detail": f"{_CANCELLED}. Check logs for error trace.", "message": _CANCELLED}
    )
    body = f'{cut},}}""],"error":{tail},"status":"failure"}}'
    return attrs.evolve(response, status=200, body=body.encode())


class FakeTransport(httpx.AsyncBaseTransport):
    """An httpx transport that hands requests to a `FakeServiceNow` in process.

    Faults surface as the exceptions a real connection gives: `httpx.ConnectError` for a
    refused connection, `httpx.ReadTimeout` when the client's read timeout passes (on the
    fake's clock) during a black hole or latency, and `httpx.RemoteProtocolError` for a
    dropped response or a released black hole.

    Args:
        fake: The instance to talk to.
    """

    def __init__(self, fake: FakeServiceNow) -> None:
        self._fake = fake
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer `request` from the fake, or raise the transport error a fault calls for."""
        body = await request.aread()
        url = request.url
        fake_request = _Request(
            method=request.method,
            path=url.path,
            query=url.query.decode("ascii"),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            base_url=f"{url.scheme}://{url.netloc.decode('ascii')}",
        )
        timeouts = request.extensions.get("timeout", {})
        outcome = await self._fake._exchange(
            fake_request,
            read_timeout=timeouts.get("read"),
            interrupt=None,
            spawn=self._spawn,
        )
        if outcome.kind == "refused":
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if outcome.kind == "timed_out":
            raise httpx.ReadTimeout("The read operation timed out", request=request)
        if outcome.response is None:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        response = outcome.response
        return httpx.Response(
            response.status, headers=list(response.headers), content=response.body, request=request
        )

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Cancel work still pending for timed-out requests (they never commit)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
