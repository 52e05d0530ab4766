"""Fuzzing: the client's response parsing, and the engine's event intake.

Client: every answer an instance (or whatever sits in front of it) could give, through
`httpx.MockTransport`: any status, Retry-After, X-RateLimit-*, X-Total-Count, content types
and encodings, and bodies of random bytes, HTML or JSON of odd shapes. Only `ServiceNowError`
subclasses may leave `create`, `get`, `query`, `update` and `create_once`.

Engine: random sequences of adapter calls with valid, stale and garbage arguments, on virtual
time, against the in-process fake. Only `CallResilienceError` subclasses may escape, and a
refused call leaves the router's snapshot as it was.

Both are bounded (see `settings`) so that the folder runs in well under a minute.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from callresilience import Agent, Call, CallResilienceError, ServiceNowError
from callresilience.engine import Engine
from callresilience.health import ComponentStatus
from callresilience.servicenow import (
    BasicAuth,
    OAuth2ClientCredentials,
    Query,
    ServiceNowClient,
)

from ..engine.conftest import Rig, build_rig, make_config

SYS_ID = "0123456789abcdef0123456789abcdef"
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- answers ----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
json_shapes = st.one_of(
    json_values,
    st.fixed_dictionaries({"result": json_values}),
    st.fixed_dictionaries({"result": st.lists(json_values, max_size=3)}),
    st.fixed_dictionaries(
        {"result": st.dictionaries(st.text(max_size=8), json_values, max_size=4)}
    ),
    st.fixed_dictionaries(
        {
            "error": json_values
            | st.fixed_dictionaries({"message": json_values, "detail": json_values})
        },
        optional={"status": st.sampled_from(["failure", "success", 3])},
    ),
    st.fixed_dictionaries(
        {"access_token": json_values},
        optional={"expires_in": json_values, "refresh_token": json_values},
    ),
)
bodies = st.one_of(
    st.binary(max_size=200),
    json_shapes.map(lambda value: json.dumps(value).encode()),
    json_shapes.map(lambda value: json.dumps(value)[: len(json.dumps(value)) // 2].encode()),
    st.text(max_size=100).map(
        lambda text: f"<html><body>{text} Hibernating</body></html>".encode()
    ),
    st.sampled_from([b"", b"Transaction cancelled: maximum execution time exceeded", b"\xff\xfe"]),
)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=40)
numbers = st.integers(-(10**15), 10**15).map(str)
http_dates = st.datetimes().map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT"))
headers = st.dictionaries(
    st.sampled_from(
        [
            "retry-after",
            "x-ratelimit-limit",
            "x-ratelimit-reset",
            "x-ratelimit-rule",
            "x-total-count",
            "x-transaction-id",
            "content-type",
            "content-encoding",
            "location",
        ]
    ),
    st.one_of(
        header_text,
        numbers,
        http_dates,
        st.sampled_from(["application/json", "text/html; charset=utf-8", "gzip", "deflate"]),
    ),
    max_size=5,
)
statuses = st.one_of(
    st.sampled_from([200, 201, 204, 400, 401, 403, 404, 408, 429, 500, 502, 503, 504]),
    st.integers(100, 999),
)
answers = st.lists(st.tuples(statuses, headers, bodies), min_size=1, max_size=6)
failures = st.sampled_from(
    [
        None,
        httpx.ConnectError,
        httpx.ReadTimeout,
        httpx.RemoteProtocolError,
        httpx.ReadError,
        httpx.PoolTimeout,
        httpx.DecodingError,
    ]
)


def scripted(script: list[tuple[tuple[int, dict[str, str], bytes], Any]]) -> httpx.MockTransport:
    """Answer the requests in turn from `script` (then its last answer again)."""
    turn = iter(range(10**6))

    def handle(request: httpx.Request) -> httpx.Response:
        (status, fields, body), failure = script[min(next(turn), len(script) - 1)]
        if failure is not None:
            raise failure("scripted", request=request)
        raw = [(name.encode(), value.encode("latin-1")) for name, value in fields.items()]
        return httpx.Response(status, headers=raw, content=body)

    return httpx.MockTransport(handle)


OPERATIONS: list[Callable[[ServiceNowClient], Awaitable[Any]]] = [
    lambda c: c.create("interaction", {"correlation_id": "c1", "state": "new"}),
    lambda c: c.get("interaction", SYS_ID, fields=["sys_id", "state"]),
    lambda c: c.query("interaction", Query().eq("correlation_id", "c1"), limit=5),
    lambda c: c.update("interaction", SYS_ID, {"state": "closed_complete"}),
    lambda c: c.create_once("interaction", {"state": "new"}, correlation=("correlation_id", "c1")),
    lambda c: c.create_once(
        "interaction", {}, correlation=("correlation_id", "c1"), lookup_first=True
    ),
    lambda c: c.probe(),
]


async def ask(script: list[Any], operation: int, oauth: bool) -> None:
    """Run one client operation against the scripted answers."""
    auth = OAuth2ClientCredentials("app", "Cs-fuzz") if oauth else BasicAuth("svc", "Pw-fuzz")
    async with ServiceNowClient(
        "https://acme.service-now.com", auth=auth, transport=scripted(script)
    ) as client:
        await OPERATIONS[operation](client)


async def on_a_created_record(operation: Callable[[ServiceNowClient], Awaitable[Any]]) -> None:
    """Run `operation` on a client whose instance answers 201 with an empty record."""
    async with ServiceNowClient(
        "https://acme.service-now.com",
        auth=BasicAuth("svc", "pw"),
        transport=scripted([((201, {}, b'{"result":{}}'), None)]),
    ) as client:
        await operation(client)


@FUZZ
@given(
    script=st.lists(
        st.tuples(st.tuples(statuses, headers, bodies), failures), min_size=1, max_size=6
    ),
    operation=st.integers(0, len(OPERATIONS) - 1),
    oauth=st.booleans(),
)
def test_only_servicenow_errors_leave_the_client(
    script: list[Any], operation: int, oauth: bool
) -> None:
    """Whatever comes back, each method returns or raises a ServiceNowError subclass."""
    message = ""
    try:
        asyncio.run(ask(script, operation, oauth))
    except ServiceNowError as error:
        message = str(error)
    assert "Pw-fuzz" not in message
    assert "Cs-fuzz" not in message


@pytest.mark.parametrize("status", [200, 500])
def test_a_deeply_nested_body_is_a_servicenow_error(status: int) -> None:
    """100,000 opening brackets: a TransientError for the read, not a RecursionError."""
    script = [((status, {"content-type": "application/json"}, b"[" * 100_000), None)]
    with pytest.raises(ServiceNowError):
        asyncio.run(ask(script, 1, False))


@pytest.mark.parametrize("name", ["x-ratelimit-limit", "x-ratelimit-reset", "x-total-count"])
def test_a_huge_number_in_a_header_is_treated_as_unreadable(name: str) -> None:
    """A 5,000-digit header is ignored (documented: unreadable headers count as absent)."""
    body = json.dumps({"result": []}).encode()
    script = [((200, {name: "9" * 5_000}, body), None)]
    asyncio.run(ask(script, 2, False))


@pytest.mark.parametrize(
    "payload",
    [{"state": object()}, {"state": b"new"}, {"duration": float("nan")}],
    ids=["object", "bytes", "nan"],
)
def test_a_payload_that_is_not_json_is_invalid_input(payload: dict[str, Any]) -> None:
    """create() refuses a payload value JSON cannot carry with InvalidInput, sending nothing."""
    with pytest.raises(CallResilienceError):
        asyncio.run(on_a_created_record(lambda c: c.create("interaction", payload)))


@pytest.mark.parametrize(
    "operation",
    [
        lambda c: c.create_once("interaction", {}, correlation=("correlation_id",)),
        lambda c: c.create_once("interaction", {}, correlation=None),
        lambda c: c.create("interaction", {}, fields=5),
    ],
    ids=["one-item correlation", "no correlation", "fields as a number"],
)
def test_malformed_client_arguments_are_invalid_input(
    operation: Callable[[ServiceNowClient], Awaitable[Any]],
) -> None:
    """Arguments of the wrong shape raise InvalidInput."""
    with pytest.raises(CallResilienceError):
        asyncio.run(on_a_created_record(operation))


# -- the engine's intake ------------------------------------------------------------------------

IDS = ["c0", "c1", "c2", "ada", "ben", "cy"]
# Hashable garbage only: unhashable ids are a known defect, pinned in test_bad_input.py.
garbage = st.one_of(
    st.none(), st.integers(), st.floats(), st.binary(max_size=5), st.text(max_size=12)
)


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`valid` four times in five, garbage otherwise."""
    return st.integers(0, 4).flatmap(lambda n: garbage if n == 0 else valid)


ids = mostly(st.sampled_from(IDS))
texts = st.one_of(st.none(), st.text(max_size=30), st.text(min_size=199, max_size=260), garbage)
callers = st.one_of(st.none(), st.sampled_from(["+14155550100", "+447700900123"]))


@st.composite
def calls(draw: st.DrawFn) -> Any:
    """A Call when the drawn fields make one, else the InvalidInput its constructor raised."""
    try:
        return Call(
            draw(mostly(st.sampled_from(["c0", "c1", "c2", "c3"]))),
            draw(mostly(callers)),
            draw(mostly(st.sampled_from(["support", "sales"]))),
            draw(mostly(st.floats(0, 100))),
            priority=draw(mostly(st.integers(0, 10))),
        )
    except CallResilienceError as error:
        return error


@st.composite
def agents(draw: st.DrawFn) -> Any:
    """An Agent when the drawn fields make one, else the InvalidInput raised."""
    try:
        return Agent(
            draw(ids),
            # Strings only: a list mixing types is a known defect (test_bad_input.py).
            queues=draw(st.lists(st.sampled_from(["support", "sales", "x y"]), max_size=2)),
        )
    except CallResilienceError as error:
        return error


steps = st.one_of(
    st.tuples(st.just("call_arrived"), calls()),
    st.tuples(st.just("login"), agents(), st.booleans()),
    st.tuples(st.sampled_from(["accept", "reject", "no_answer", "assign"]), ids, ids),
    st.tuples(st.sampled_from(["hangup", "end", "hold", "resume", "mute", "unmute"]), ids),
    st.tuples(st.sampled_from(["ready", "logout", "finish_wrap_up", "heartbeat"]), ids),
    st.tuples(st.just("not_ready"), ids, texts),
    st.tuples(st.just("reject_why"), ids, ids, texts),
    st.tuples(st.just("transfer"), ids, texts),
    st.tuples(st.just("acknowledge"), ids, st.one_of(st.none(), st.integers(-2, 5), garbage)),
    st.tuples(st.just("report_component"), ids, st.sampled_from([*ComponentStatus, "down"])),
    st.tuples(st.just("advance"), st.floats(0.1, 30)),
    st.tuples(st.just("accept_offered")),
    st.tuples(st.just("accept_offered")),
)


def operation(engine: Engine, step: tuple[Any, ...]) -> Awaitable[Any] | None:
    """Turn a drawn step into the engine call it stands for."""
    name, *args = step
    if name == "accept_offered":
        return None  # nothing offered yet
    if name in ("call_arrived", "login") and isinstance(args[0], CallResilienceError):
        raise args[0]  # the value was refused before it could reach the engine
    if name == "login":
        return engine.login(args[0], ready=args[1])
    if name == "reject_why":
        return engine.reject(args[0], args[1], args[2])
    if name == "report_component":
        return engine.report_component(args[0], args[1], scopes=["default"])
    return getattr(engine, name)(*args)


async def intake(steps_drawn: list[tuple[Any, ...]]) -> None:
    """Feed the steps to a fresh engine; check each refusal left the routing state alone."""
    rig: Rig
    async with build_rig(make_config()) as rig:
        for drawn in steps_drawn:
            step = drawn
            await rig.settle()
            if step[0] == "advance":
                await rig.advance(step[1], step=2.0)
                continue
            if step[0] == "accept_offered" and rig.channel.offers:
                _, agent_id, offer = rig.channel.offers[-1]
                step = ("accept", offer.call.call_id, agent_id)
            before = rig.engine.router.snapshot()
            try:
                pending = operation(rig.engine, step)
                if pending is not None:
                    await pending
            except CallResilienceError as error:
                event(f"{step[0]}: {type(error).__name__}")
                assert rig.engine.router.snapshot() == before, step
            else:
                event(f"{step[0]}: done")


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(steps, min_size=1, max_size=25))
def test_only_typed_errors_escape_the_engine_and_refusals_change_nothing(
    steps_drawn: list[tuple[Any, ...]],
) -> None:
    """Random adapter events with random arguments: typed errors only, state kept on refusal."""
    asyncio.run(intake(steps_drawn))
