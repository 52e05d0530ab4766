"""Logging audit: a faulty engine run logs no full phone number and no secret, under sane names.

The naming rule checked here: a module logs under its public package, the module's dotted
name without its private parts (``callresilience/servicenow/_client.py`` logs as
``callresilience.servicenow``), and calls `logging.getLogger` at most once.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import callresilience
from callresilience import Agent, Call, CallResilienceError
from callresilience.engine import Engine, RecordMapping
from callresilience.journal import EntryState, MemoryJournal
from callresilience.servicenow import Auth, BasicAuth, OAuth2Password
from callresilience.testing import (
    BrokenOk,
    DropResponse,
    ExpireTokens,
    FakeServiceNow,
    Hibernating,
    ManualClock,
    RateLimit,
    RefuseConnections,
    ServiceUnavailable,
    TransactionCancelled,
)

from ..engine.conftest import ADA, BEN, RecordingChannel, Rig, make_config

pytestmark = pytest.mark.anyio

USER = "svc-cti"
PASSWORD = "Pw-logcheck-4242"
CLIENT_ID = "cti-app"
CLIENT_SECRET = "Cs-logcheck-9191"
NUMBERS = ("+14155550100", "+447700900123", "+33612345678")
CY = Agent("cy", queues=["support"], user_sys_id="c" * 32)
SRC = Path(callresilience.__file__).parent
#: Loggers the library is known to use; new modules may add more, under the same rule.
KNOWN = {
    "callresilience",
    "callresilience.engine",
    "callresilience.journal",
    "callresilience.metrics",
    "callresilience.servicenow",
}


class Recording(httpx.AsyncBaseTransport):
    """Passes requests on, and writes down every token the run sent or received."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.tokens: set[str] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if "authorization" in request.headers:
            self.tokens.add(request.headers["authorization"].split()[-1])
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith("oauth_token.do") and response.status_code == 200:
            body = json.loads(await response.aread())
            self.tokens |= {body[k] for k in ("access_token", "refresh_token") if k in body}
        return response


@contextlib.asynccontextmanager
async def faulty_rig(auth: Auth) -> AsyncIterator[tuple[Rig, Recording]]:
    """An engine on virtual time against a fake with a script of faults, three agents logged in.

    Work items go to a table the instance lacks, so a missed offer leaves a dead entry.
    """
    clock = ManualClock()
    fake = FakeServiceNow(
        clock=clock, user=USER, password=PASSWORD, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    for fault, start, duration, options in [
        (ServiceUnavailable(retry_after=2), 5, 10, {}),
        (RefuseConnections(), 20, 20, {}),
        (Hibernating(), 45, 10, {}),
        (DropResponse(), 60, 10, {"methods": {"POST"}, "tables": {"interaction"}}),
        (BrokenOk(), 75, 5, {"tables": {"sn_openframe_phone_log"}}),
        (TransactionCancelled(), 85, 5, {}),
        (ExpireTokens(), 95, 1, {}),
        (RateLimit(3, per="second"), 100, 20, {}),
    ]:
        fake.faults.add(fault, start=start, duration=duration, **options)
    channel = RecordingChannel(clock)
    channel.unreachable.add("cy")
    transport = Recording(fake.transport())
    config = make_config(auth=auth, records=RecordMapping(work_item_table="u_missing_work_item"))
    engine = Engine(config, channel, clock=clock, transport=transport, store=MemoryJournal())
    async with engine:
        for agent in (ADA, BEN, CY):
            await engine.login(agent, ready=True)
        yield Rig(clock, fake, channel, engine, []), transport


async def run_scenario(rig: Rig) -> None:
    """Twelve calls through the faults: offers, a ring-out, holds, inline Interactions."""
    engine = rig.engine
    for n in range(12):
        call_id = f"c{n}"
        await engine.call_arrived(Call(call_id, NUMBERS[n % 3], "support", rig.clock.now()))
        await rig.settle()
        if n == 3:
            await rig.advance(21)  # rings out: a work item for the missing table
        agent = rig.channel.offers[-1][1]
        opening = None
        with contextlib.suppress(CallResilienceError):
            await engine.accept(call_id, agent)
            await engine.hold(call_id)
            await engine.resume(call_id)
            # It waits on the virtual clock, so it runs while time moves on.
            opening = asyncio.create_task(engine.open_interaction(call_id))
        await rig.advance(8)
        if opening is not None:
            with contextlib.suppress(CallResilienceError):
                await opening
        with contextlib.suppress(CallResilienceError):
            await engine.end(call_id)
    await rig.advance(150, step=1.0)  # c3 stays behind its dead work item, so no full drain


def number_forms() -> list[str]:
    """Each caller's number as E.164, without the '+', and without the country code."""
    forms = []
    for number in NUMBERS:
        forms += [number, number[1:], number[-9:]]
    return forms


def shown(records: list[logging.LogRecord]) -> list[str]:
    """Each record as a handler would write it, traceback included."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return [formatter.format(record) for record in records]


def public_package(path: Path) -> str:
    """The public package of a module under src/callresilience (private parts dropped)."""
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(part for part in parts if not part.startswith("_"))


def in_package(name: str, path: Path) -> bool:
    """Whether a logger name is the module's public package, or a child of it."""
    package = public_package(path)
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize(
    "auth",
    [
        BasicAuth(USER, PASSWORD),
        OAuth2Password(CLIENT_ID, CLIENT_SECRET, USER, PASSWORD, refresh_margin=0),
    ],
    ids=["basic", "oauth2-password"],
)
async def test_a_faulty_run_logs_no_number_and_no_secret(
    auth: Auth, caplog: pytest.LogCaptureFixture
) -> None:
    """Every record at DEBUG and up, tracebacks included, is free of numbers and secrets."""
    caplog.set_level(logging.DEBUG)
    async with faulty_rig(auth) as (rig, transport):
        await run_scenario(rig)
        counts = await rig.engine.journal.counts()
    assert counts[EntryState.DEAD] >= 1  # the scenario reached the dead-entry path
    records = [r for r in caplog.records if r.name.startswith("callresilience")]
    assert len(records) > 20
    levels = {r.levelno for r in records}
    assert {logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR} <= levels
    text = "\n".join(shown(caplog.records))  # httpx's own request lines included
    for form in number_forms():
        assert form not in text
    assert not re.search(r"\+[0-9]{7,15}", text)
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    secrets = {PASSWORD, CLIENT_SECRET, basic, *transport.tokens}
    assert len(secrets) >= 3
    for secret in secrets:
        assert secret not in text
    for record in records:
        assert in_package(record.name, Path(record.pathname)), record.pathname


def _get_logger(node: ast.AST) -> str | None:
    """The literal name of a ``getLogger("...")`` call, "" for another argument, else None."""
    if not isinstance(node, ast.Call):
        return None
    if getattr(node.func, "attr", getattr(node.func, "id", None)) != "getLogger":
        return None
    (argument,) = node.args
    return argument.value if isinstance(argument, ast.Constant) else ""


def test_every_logger_is_named_after_its_public_package() -> None:
    """Each module defines at most one logger of its own, named within its public package;
    other getLogger calls (adjusting levels) name a logger of the library."""
    defined: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        loggers = [
            name
            for statement in tree.body
            if isinstance(statement, ast.Assign)
            and (name := _get_logger(statement.value)) is not None
        ]
        assert len(loggers) <= 1, f"{path}: more than one module logger"
        for name in loggers:
            assert in_package(name, path), path
            defined.setdefault(name, set()).add(path.name)
        for node in ast.walk(tree):
            name = _get_logger(node)
            assert name is None or name.startswith("callresilience"), path
    assert set(defined) >= KNOWN - {"callresilience"}
    shared = {name: files for name, files in defined.items() if len(files) > 1}
    assert not shared, f"one logger per module: {shared}"
