"""Bad input through the public API: a typed error that names the field, and nothing changed.

Each case here is new; the engine, router and query suites already pin their own lists
(tests/engine/test_bad_input.py, tests/routing/test_router_bad_input.py,
tests/servicenow/test_query.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from callresilience import (
    Agent,
    Call,
    CallResilienceError,
    InvalidInput,
    RouterConfig,
    UnknownCall,
    UnsafeQueryValue,
)
from callresilience.engine import Engine, RecordMapping
from callresilience.health import ComponentStatus, Severity
from callresilience.journal import (
    EntryState,
    Intent,
    MemoryJournal,
    SqliteJournal,
    UnknownEntry,
)
from callresilience.servicenow import (
    ApiKey,
    BasicAuth,
    OAuth2ClientCredentials,
    Query,
    ServiceNowClient,
)

from ..engine.conftest import RecordingChannel, Rig, make_config
from .conftest import fingerprint

pytestmark = pytest.mark.anyio

BIG = "x" * 100_000  # 100 KB: far past every documented limit


async def connected(rig: Rig) -> None:
    """c1 was answered by ada and is in progress."""
    await rig.engine.call_arrived(rig.call("c1"))
    await rig.engine.accept("c1", "ada")


async def nothing(rig: Rig) -> None:
    """Ada and ben idle, no call."""


Setup = Callable[[Rig], Awaitable[None]]


async def perform(operation: Callable[[Engine], Any], engine: Engine) -> None:
    """Call `operation` on the engine, awaiting it when it is a coroutine."""
    result = operation(engine)
    if isinstance(result, Awaitable):
        await result


ENGINE_CASES: list[tuple[str, Setup, Callable[[Engine], Any], type[Exception], str]] = [
    ("not-ready reason of 100 KB", nothing, lambda e: e.not_ready("ada", BIG), InvalidInput, "at most 100"),
    ("not-ready reason that is not text", nothing, lambda e: e.not_ready("ada", 5), InvalidInput, "reason"),
    ("reject reason that is not text", connected, lambda e: e.reject("c1", "ada", 5), InvalidInput, "reason"),
    ("reject reason of 100 KB", connected, lambda e: e.reject("c1", "ada", BIG), InvalidInput, "at most 200"),
    ("login with an agent id instead of an Agent", nothing, lambda e: e.login("cy"), InvalidInput, "expected an Agent"),
    ("arrival with a call id instead of a Call", nothing, lambda e: e.call_arrived("c9"), InvalidInput, "expected a Call"),
    ("transfer target with a line break", connected, lambda e: e.transfer("c1", "billing\n"), InvalidInput, "1-128"),
    ("transfer target of 100 KB", connected, lambda e: e.transfer("c1", BIG), InvalidInput, "1-128"),
    ("transfer target with a javascript: prefix", connected, lambda e: e.transfer("c1", "javascript:gs.log(1)"), InvalidInput, "1-128"),
    ("heartbeat of a node name with '^'", nothing, lambda e: e.heartbeat("n1^ORactive=true"), InvalidInput, "identifier"),
    ("watch a node name with a newline", nothing, lambda e: e.watch_node("n1\nx"), InvalidInput, "identifier"),
    ("component status given as a string", nothing, lambda e: e.report_component("carrier", "down"), InvalidInput, "ComponentStatus"),
    ("component name with '^NQ'", nothing, lambda e: e.report_component("c^NQx", ComponentStatus.OUTAGE), InvalidInput, "identifier"),
    ("component scopes as one string", nothing, lambda e: e.report_component("carrier", ComponentStatus.OUTAGE, scopes="emea"), InvalidInput, "give a list of scope names"),
    ("the engine's own component", nothing, lambda e: e.report_component("servicenow", ComponentStatus.OUTAGE), InvalidInput, "servicenow"),
    ("forced mode given as a string", nothing, lambda e: e.force_mode("default", "resiliency"), InvalidInput, "Mode"),
    ("acknowledge a notice id that is not one", nothing, lambda e: e.acknowledge("ada", "x"), InvalidInput, "notice_id"),
    ("incident title of 100 KB", nothing, lambda e: e.open_incident(BIG, Severity.MAJOR), InvalidInput, "1-200"),
    ("incident severity as a string", nothing, lambda e: e.open_incident("Carrier down", "high"), InvalidInput, "Severity"),
    ("resolve an incident that does not exist", nothing, lambda e: e.resolve_incident(999), InvalidInput, "not an open incident"),
    ("no-answer for an id built to inject", nothing, lambda e: e.no_answer("c1^ORactive=true", "ada"), UnknownCall, "not known"),
    ("hang up a call id of 100 KB", nothing, lambda e: e.hangup(BIG), UnknownCall, "not known"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("setup", "operation", "error", "words"),
    [case[1:] for case in ENGINE_CASES],
    ids=[case[0] for case in ENGINE_CASES],
)
async def test_engine_refuses_bad_input_and_changes_nothing(
    rig: Rig,
    setup: Setup,
    operation: Callable[[Engine], Any],
    error: type[Exception],
    words: str,
) -> None:
    """A typed error whose message says what to give; routing, status and journal unchanged."""
    await setup(rig)
    await rig.settle()
    await rig.drained()
    before = await fingerprint(rig)
    with pytest.raises(error, match=words) as caught:
        await perform(operation, rig.engine)
    assert isinstance(caught.value, CallResilienceError)
    await rig.settle()
    assert await fingerprint(rig) == before


VALUE_CASES: list[tuple[str, Callable[[], object], str]] = [
    ("call id of 100 KB", lambda: Call(BIG, "+14155550100", "support", 0.0), "1-64"),
    ("agent id of 100 KB", lambda: Agent(BIG, queues=["support"]), "1-64"),
    ("queue name with '^'", lambda: Call("c1", None, "support^ORx", 0.0), "identifier"),
    ("caller attribute of 100 KB", lambda: Call("c1", None, "support", 0.0, attributes={"note": BIG}), "1024"),
    ("caller number with a trailing NUL", lambda: Call("c1", "+14155550100\x00", "support", 0.0), "E.164"),
    ("priority beyond the range", lambda: Call("c1", None, "support", 0.0, priority=5000), "0 to 1000"),
    ("arrival time that is NaN", lambda: Call("c1", None, "support", float("nan")), "not a time"),
    ("agent sys_id that is a path", lambda: Agent("ada", user_sys_id="../sys_user"), "sys_id"),
    ("tier level zero", lambda: Agent("ada", queues={"support": 0}), "tier level"),
    ("skill with a newline", lambda: Agent("ada", skills=["fr\nen"]), "identifier"),
    ("engine read timeout of zero", lambda: make_config(read_timeout=0), "seconds > 0"),
    ("engine default scope with '^'", lambda: make_config(default_scope="a^NQb"), "identifier"),
    ("correlation field with '^'", lambda: RecordMapping(interaction_correlation="u_id^ORx"), "identifier"),
    ("router offer timeout that is negative", lambda: RouterConfig(offer_timeout=-1), "offer_timeout"),
    ("password with a trailing newline", lambda: BasicAuth("svc", "Pw-secret\n"), "line break"),
    ("user name with ':'", lambda: BasicAuth("svc:admin", "Pw-secret"), "':'"),
    ("token path that is a full URL", lambda: OAuth2ClientCredentials("app", "Cs", token_path="https://evil.example/t"), "token_path"),
    ("API key header with CRLF", lambda: ApiKey("Ak-secret", header="x-sn-apikey\r\nX-Evil: 1"), "line break"),
    ("query field with '^'", lambda: Query().eq("call_id^ORsys_id", "c1"), "field name"),
    ("IN-list item smuggling '^NQ'", lambda: Query().in_("call_id", ["c1", "c2^NQactive=true"]), "new query condition"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("build", "words"),
    [case[1:] for case in VALUE_CASES],
    ids=[case[0] for case in VALUE_CASES],
)
def test_values_and_settings_refuse_bad_input(build: Callable[[], object], words: str) -> None:
    """Calls, agents, configs, credentials and queries refuse bad values with InvalidInput."""
    with pytest.raises(InvalidInput, match=words) as caught:
        build()
    assert "Pw-secret" not in str(caught.value)
    assert "Ak-secret" not in str(caught.value)
    assert BIG not in str(caught.value)


def test_engine_refuses_a_base_url_with_credentials_and_names_no_secret() -> None:
    """EngineConfig with `user:password@` in the URL is refused when the engine is built."""
    config = make_config(instance="https://svc:Pw-inurl@acme.service-now.com")
    with pytest.raises(InvalidInput, match="must not carry a user name") as caught:
        Engine(config, RecordingChannel(None))  # type: ignore[arg-type]
    assert "Pw-inurl" not in str(caught.value)


# -- the client: refused before any request leaves -----------------------------------------


class Counting(httpx.AsyncBaseTransport):
    """Answers every request with an empty result, counting them."""

    def __init__(self) -> None:
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return httpx.Response(200, json={"result": []})


SYS_ID = "a" * 32
CLIENT_CASES: list[tuple[str, Callable[[ServiceNowClient], Awaitable[Any]], type[Exception], str]] = [
    ("query given as a string", lambda c: c.query("interaction", "call_id=c1^ORactive=true"), InvalidInput, "Query()"),
    ("table with a path in it", lambda c: c.create("interaction/../sys_user", {"a": "b"}), InvalidInput, "table"),
    ("sys_id that walks the path", lambda c: c.get("interaction", "../../sys_user"), InvalidInput, "sys_id"),
    ("update of a sys_id with a query", lambda c: c.update("interaction", SYS_ID + "?sysparm_x=1", {}), InvalidInput, "sys_id"),
    ("payload key with '^'", lambda c: c.create("interaction", {"state^ORx": "1"}), InvalidInput, "field name"),
    ("correlation value with '^OR'", lambda c: c.create_once("interaction", {}, correlation=("correlation_id", "c1^ORsys_id!=0")), UnsafeQueryValue, "new query condition"),
    ("correlation value with '^NQ'", lambda c: c.create_once("interaction", {}, correlation=("correlation_id", "c1^NQactive=true")), UnsafeQueryValue, "new query condition"),
    ("correlation value with a newline", lambda c: c.create_once("interaction", {}, correlation=("correlation_id", "c1\nactive=true")), UnsafeQueryValue, "line break"),
    ("correlation value that is a script", lambda c: c.create_once("interaction", {}, correlation=("correlation_id", "javascript:gs.getUser()")), UnsafeQueryValue, "javascript"),
    ("correlation value of 100 KB", lambda c: c.create_once("interaction", {}, correlation=("correlation_id", BIG)), UnsafeQueryValue, "longer than"),
    ("payload disagreeing with the correlation", lambda c: c.create_once("interaction", {"correlation_id": "c2"}, correlation=("correlation_id", "c1")), InvalidInput, "differs"),
    ("limit of zero", lambda c: c.query("interaction", limit=0), InvalidInput, "limit"),
    ("returned fields with '^'", lambda c: c.query("interaction", fields=["sys_id^ORx"]), InvalidInput, "field name"),
    ("probe of an endpoint not configured", lambda c: c.probe(endpoint="https://evil.example"), InvalidInput, "not one of"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("operation", "error", "words"),
    [case[1:] for case in CLIENT_CASES],
    ids=[case[0] for case in CLIENT_CASES],
)
async def test_client_refuses_bad_input_before_sending(
    operation: Callable[[ServiceNowClient], Awaitable[Any]], error: type[Exception], words: str
) -> None:
    """The client raises the typed error and sends nothing at all."""
    transport = Counting()
    async with ServiceNowClient(
        "https://acme.service-now.com", auth=BasicAuth("svc", "pw"), transport=transport
    ) as client:
        with pytest.raises(error, match=words) as caught:
            await operation(client)
    assert isinstance(caught.value, CallResilienceError)
    assert BIG not in str(caught.value)
    assert transport.sent == []


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"verify": False, "transport": Counting()}, "default transport"),
        ({"verify": "no"}, "verify"),
        ({"read_timeout": float("inf")}, "read_timeout"),
        ({"create_attempts": 0}, "create_attempts"),
        ({"probe_table": "sys_user^ORx"}, "table"),
        ({"auth": "svc:pw"}, "auth setting"),
    ],
)
def test_client_options_are_checked(options: dict[str, Any], words: str) -> None:
    """Each bad client option raises InvalidInput naming it."""
    settings: dict[str, Any] = {"auth": BasicAuth("svc", "pw"), **options}
    with pytest.raises(InvalidInput, match=words):
        ServiceNowClient("https://acme.service-now.com", **settings)


# -- the journal stores --------------------------------------------------------------------


def good_intent(n: int) -> Intent:
    """A small, valid intent."""
    return Intent(f"c{n}", "create_phone_log", {"call_id": f"c{n}"}, f"c{n}:phone_log")


JOURNAL_CASES: list[tuple[str, Callable[[Any], Awaitable[Any]], type[Exception], str]] = [
    ("a batch holding a dict", lambda j: j.append([good_intent(2), {"call_id": "c3"}], 1.0), InvalidInput, "not an Intent"),
    ("one Intent instead of a batch", lambda j: j.append(good_intent(2), 1.0), InvalidInput, "sequence"),
    ("a time that is not finite", lambda j: j.append([good_intent(2)], float("inf")), InvalidInput, "not a time"),
    ("claim by an owner of 100 KB", lambda j: j.claim(BIG, 1.0, 10, 30.0), InvalidInput, "owner"),
    ("claim with a zero lease", lambda j: j.claim("w1", 1.0, 10, 0), InvalidInput, "lease"),
    ("claim skipping a group given as a string", lambda j: j.claim("w1", 1.0, 10, 30.0, skip_groups="emea"), InvalidInput, "skip_groups"),
    ("replay an unknown entry", lambda j: j.replay(999, 1.0), UnknownEntry, "not in the journal"),
    ("list a state given as a string", lambda j: j.list(state="dead"), InvalidInput, "EntryState"),
]  # fmt: skip


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    """Each journal store, holding one pending entry."""
    journal = MemoryJournal() if request.param == "memory" else SqliteJournal(tmp_path / "j.db")
    async with journal:
        await journal.append([good_intent(1)], 0.0)
        yield journal


@pytest.mark.parametrize(
    ("operation", "error", "words"),
    [case[1:] for case in JOURNAL_CASES],
    ids=[case[0] for case in JOURNAL_CASES],
)
async def test_journal_refuses_bad_input_and_changes_nothing(
    store: Any, operation: Callable[[Any], Awaitable[Any]], error: type[Exception], words: str
) -> None:
    """Each store raises the typed error; its entries and counts are as they were."""
    before = (await store.list(), await store.counts())
    with pytest.raises(error, match=words) as caught:
        await operation(store)
    assert isinstance(caught.value, CallResilienceError)
    assert (await store.list(), await store.counts()) == before
    assert (await store.counts())[EntryState.PENDING] == 1


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"payload": {"notes": BIG}}, "at most 65536"),
        ({"kind": BIG}, "kind"),
        ({"key": BIG}, "key"),
        ({"call_id": "c1^ORx"}, "identifier"),
        ({"payload": {"n": float("nan")}}, "JSON"),
    ],
)
def test_intents_refuse_oversized_and_unsafe_values(changes: dict[str, Any], words: str) -> None:
    """An Intent past its documented limits is refused when built."""
    fields: dict[str, Any] = {
        "call_id": "c1",
        "kind": "create_phone_log",
        "payload": {"call_id": "c1"},
        "key": "c1:phone_log",
        **changes,
    }
    with pytest.raises(InvalidInput, match=words):
        Intent(**fields)


# -- defects: untyped errors, silent acceptance, state changed after a refusal --------------


async def always_up() -> bool:
    """A node check that says the node is up."""
    return True


UNTYPED_ENGINE_CASES: list[tuple[str, Callable[[Engine], Any], str]] = [
    ("ready with a list as agent id", lambda e: e.ready(["ada"]), "routing/_router.py:578 dict lookup of an unhashable id"),
    ("end with a dict as call id", lambda e: e.end({}), "routing/_router.py:594 dict lookup of an unhashable id"),
    ("open_interaction with a list as call id", lambda e: e.open_interaction([]), "routing/_router.py:594 dict lookup of an unhashable id"),
    ("component scopes given as a number", lambda e: e.report_component("carrier", ComponentStatus.OUTAGE, scopes=5), "health/_modes.py:124 iterates the int"),
    ("incident scopes given as a number", lambda e: e.open_incident("Carrier down", Severity.MAJOR, scopes=5), "health/_incidents.py:148 iterates the int"),
    ("node check interval given as text", lambda e: e.watch_node("n2", check=always_up, interval="5s"), "engine/_continuity.py:307 compares str > int"),
    ("node check that is not callable", lambda e: e.watch_node("n3", check=5), "engine/_continuity.py:302 accepts it; the loop then marks the node down"),
]  # fmt: skip


@pytest.mark.parametrize(
    "operation",
    [case[1] for case in UNTYPED_ENGINE_CASES],
    ids=[f"{case[0]}: {case[2]}" for case in UNTYPED_ENGINE_CASES],
)
async def test_engine_garbage_arguments_raise_invalid_input(
    rig: Rig, operation: Callable[[Engine], Any]
) -> None:
    """Arguments of the wrong type are refused with InvalidInput and change nothing."""
    before = await fingerprint(rig)
    with pytest.raises(CallResilienceError):
        await perform(operation, rig.engine)
    await rig.advance(30)
    assert await fingerprint(rig) == before


UNTYPED_VALUE_CASES: list[tuple[str, Callable[[], object], str]] = [
    ("agent queues given as a number", lambda: Agent("ada", queues=5), "_model.py:217 iterates the int"),
    ("agent skills given as a number", lambda: Agent("ada", skills=5), "_model.py:106 frozenset(5)"),
    ("call skills given as a number", lambda: Call("c1", None, "support", 0.0, skills=5), "_model.py:106 frozenset(5)"),
    ("agent queues keyed by int and str", lambda: Agent("ada", queues={1: 1, "support": 1}), "_model.py:216 sorts mixed keys"),
    ("agent queues list holding None", lambda: Agent("ada", queues=["support", None]), "_model.py:217 sorts mixed names"),
]  # fmt: skip


@pytest.mark.parametrize(
    "build",
    [case[1] for case in UNTYPED_VALUE_CASES],
    ids=[f"{case[0]}: {case[2]}" for case in UNTYPED_VALUE_CASES],
)
def test_values_of_the_wrong_type_raise_invalid_input(build: Callable[[], object]) -> None:
    """A Call or Agent built from values of the wrong type raises InvalidInput."""
    with pytest.raises(InvalidInput):
        build()


def test_an_oversized_mapping_value_is_refused_up_front() -> None:
    """A 100 KB phone log call type is refused when the mapping is built, not at accept."""
    with pytest.raises(InvalidInput, match="phone_log_call_type"):
        RecordMapping(phone_log_call_type=BIG)
