"""Encoded-query injection through every path that builds a query, field sizes, and TLS.

The builder's own refusals are pinned in tests/servicenow/test_query.py; here the values come
in the way an adapter sends them: as call ids, agent ids and queues to the engine, and as
correlation values of journaled intents that the drainer looks up.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from benchmarks._tls import make_certificate

from callresilience import (
    Agent,
    Call,
    CallResilienceError,
    InvalidInput,
    PermanentError,
    RoutingError,
)
from callresilience.journal import EntryState, create_intent
from callresilience.servicenow import BasicAuth, ServiceNowClient
from callresilience.testing import DropResponse, parse_encoded_query

from ..engine.conftest import Rig
from .conftest import fingerprint

pytestmark = pytest.mark.anyio

INJECTIONS = [
    "c1^ORsys_id!=0",
    "c1^NQactive=true",
    "c1^ORDERBYsys_id",
    "^",
    "c1\nactive=true",
    "c1\r\nactive=true",
    "c1\u2028active=true",
    "c1\x00",
    "javascript:gs.getUser()",
    " \u200bJavaScript:gs.log(1)",
    "c1,c2",
    "c1 OR 1=1",
]
ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


@pytest.mark.parametrize("value", INJECTIONS)
def test_adapter_ids_that_would_reshape_a_query_are_refused(value: str) -> None:
    """Call ids, queues, agent ids and skills with query syntax never become values."""
    for build in (
        lambda: Call(value, "+14155550100", "support", 0.0),
        lambda: Call("c1", None, value, 0.0),
        lambda: Agent(value, queues=["support"]),
        lambda: Agent("ada", queues=[value]),
        lambda: Agent("ada", skills=[value]),
    ):
        with pytest.raises(InvalidInput, match="identifier"):
            build()


@pytest.mark.parametrize("value", INJECTIONS)
async def test_engine_events_with_injected_ids_change_nothing(rig: Rig, value: str) -> None:
    """Events naming an injected call or agent id are refused and send no request."""
    await rig.engine.call_arrived(rig.call("c1"))
    await rig.settle()
    await rig.drained()
    rig.fake.clear_requests()
    before = await fingerprint(rig)
    for event in (
        lambda: rig.engine.accept(value, "ada"),
        lambda: rig.engine.accept("c1", value),
        lambda: rig.engine.reject(value, "ada"),
        lambda: rig.engine.hangup(value),
        lambda: rig.engine.open_interaction(value),
        lambda: rig.engine.transfer("c1", value),
        lambda: rig.engine.ready(value),
    ):
        with pytest.raises(CallResilienceError):
            await event()
    await rig.settle()
    assert await fingerprint(rig) == before
    assert rig.fake.requests == ()


async def test_every_lookup_the_engine_sends_is_one_correlation_condition(rig: Rig) -> None:
    """Lost answers force lookups; each is `<field>=<call id or miss key>` and nothing else."""
    rig.fake.faults.add(DropResponse(), start=rig.clock.now(), duration=30, methods={"POST"})
    for n in range(4):
        await rig.engine.call_arrived(rig.call(f"call-{n}.a:b"))
        await rig.settle()
        agent = rig.channel.offers[-1][1]
        if n == 3:
            await rig.advance(21)  # a ring-out: a work item correlated as <id>:missed-1
            agent = rig.channel.offers[-1][1]
        await rig.engine.accept(f"call-{n}.a:b", agent)
        await rig.engine.end(f"call-{n}.a:b")
    await rig.drained()
    queries = [r.params["sysparm_query"] for r in rig.fake.requests if r.method == "GET"]
    queries = [q for q in queries if q]
    assert len(queries) >= 4
    for text in queries:
        parsed = parse_encoded_query(text)
        (group,) = parsed.groups
        ((condition,),) = group
        assert condition.field in {"call_id", "correlation_id"}
        assert condition.operator == "="
        assert ID_RE.fullmatch(condition.value)
        assert text.count("^") <= 1  # the condition, then at most an ORDERBY


@pytest.mark.parametrize("value", INJECTIONS[:10])
async def test_a_journaled_correlation_value_with_query_syntax_is_never_sent(
    rig: Rig, value: str
) -> None:
    """An intent appended by hand with an unsafe correlation dies; no lookup, no POST."""
    intent = create_intent(
        "c7",
        "phone_log",
        "sn_openframe_phone_log",
        {"call_id": value},
        correlation=("call_id", value),
    )
    rig.fake.clear_requests()
    (entry,) = await rig.engine.journal.append([intent], rig.clock.time())
    await rig.advance(10)
    dead = await rig.engine.journal.get(entry.entry_id)
    assert dead.state is EntryState.DEAD
    assert "refused" in (dead.last_error or "")
    assert len(value) < 3 or value not in (dead.last_error or "")
    assert [r for r in rig.fake.requests if r.table == "sn_openframe_phone_log"] == []


# -- field sizes ------------------------------------------------------------------------------

BIG = "x" * 100_000


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: Call("c1", None, "support", 0.0, attributes={"note": BIG}), "1024"),
        (lambda: Call("c1", None, "support", 0.0, attributes={BIG: "v"}), "1-64"),
        (lambda: Call(BIG, None, "support", 0.0), "1-64"),
        (lambda: Agent(BIG), "1-64"),
    ],
    ids=["caller attribute", "attribute key", "call id", "agent id"],
)
def test_oversized_adapter_values_are_refused_not_truncated(build: object, words: str) -> None:
    """100 KB attributes and ids raise InvalidInput naming the limit; nothing is cut."""
    with pytest.raises(InvalidInput, match=words) as caught:
        build()  # type: ignore[operator]
    assert len(str(caught.value)) < 300


async def test_oversized_reason_is_refused_and_not_emitted(rig: Rig) -> None:
    """A 100 KB reject reason is refused; the offer keeps ringing, no event carries it."""
    await rig.engine.call_arrived(rig.call("c1"))
    await rig.settle()
    with pytest.raises(InvalidInput, match="at most 200"):
        await rig.engine.reject("c1", "ada", BIG)
    assert rig.engine.router.call("c1").state.value == "offered"
    assert not any(BIG in repr(event) for event in rig.events)


async def test_the_client_sends_a_100_kb_field_value_as_given() -> None:
    """Undocumented: the client has no field-length limit, so 100 KB goes to the instance.

    ServiceNow itself cuts a string longer than the field's max_length. The engine never
    sends free text (ids are 64 characters at most), and the journal refuses payloads over
    64 KiB, but `ServiceNowClient.create` passes any size through.
    """
    sizes: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sizes.append(len(request.content))
        return httpx.Response(201, json={"result": {"sys_id": "a" * 32}})

    transport = httpx.MockTransport(handle)
    async with ServiceNowClient(
        "https://acme.service-now.com", auth=BasicAuth("svc", "pw"), transport=transport
    ) as client:
        await client.create("interaction", {"short_description": BIG})
    assert len(sizes) == 1
    assert sizes[0] > 100_000


# -- TLS -------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def tls_server(folder: Path) -> AsyncIterator[tuple[str, Path, list[bytes]]]:
    """A loopback HTTPS server answering every request with an empty Table API result."""
    cert_file, key_file = make_certificate(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    received: list[bytes] = []
    body = b'{"result":[]}'

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            received.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"https://127.0.0.1:{port}", cert_file, received


def test_verification_is_on_by_default() -> None:
    """The default transport's context requires a valid certificate for the host name."""
    client = ServiceNowClient("https://acme.service-now.com", auth=BasicAuth("svc", "pw"))
    context = client._http._transport._pool._ssl_context  # type: ignore[attr-defined]
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True


async def test_a_self_signed_instance_is_refused_unless_told_otherwise(tmp_path: Path) -> None:
    """Default: PermanentError naming the trust store, and no request (or password) sent."""
    async with tls_server(tmp_path) as (url, cert_file, received):
        auth = BasicAuth("svc", "Pw-tls-1234")
        async with ServiceNowClient(url, auth=auth) as client:
            with pytest.raises(PermanentError, match="TLS certificate did not verify") as caught:
                await client.probe()
        assert "Pw-tls-1234" not in str(caught.value)
        assert received == []
        trusting = ssl.create_default_context(cafile=str(cert_file))
        async with ServiceNowClient(url, auth=auth, verify=trusting) as client:
            assert await client.probe() >= 0
        async with ServiceNowClient(url, auth=auth, verify=False) as client:
            assert await client.probe() >= 0
        assert len(received) == 2


async def test_routing_errors_are_typed_for_unknown_ids(rig: Rig) -> None:
    """An id no event ever named is a RoutingError, not a KeyError."""
    with pytest.raises(RoutingError):
        await rig.engine.accept("never-seen", "ada")
