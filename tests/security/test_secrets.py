"""No secret and no full phone number in any log line, repr, error message or CLI output.

One engine run per auth kind (OAuth2 client credentials, basic) against the FakeServiceNow with
faults, token expiry and 401s; then clients with wrong credentials; then `callresilience check`
and `callresilience simulate` with credentials in the environment. Everything they said is
searched: every log record at DEBUG (tracebacks included, httpx's own lines too), the repr of
every configuration, auth, client and engine object, str() of every library error created
during the run, every event, and every journal entry with its last error.

The run itself reuses the logging audit's scenario (tests/cli/test_logging_hygiene.py); this
adds client credentials, short-lived tokens, wrong credentials of every kind, reprs, errors
and the two commands.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from callresilience import CallResilienceError, RouterConfig
from callresilience.cli import _check, main
from callresilience.engine import Engine, RecordMapping
from callresilience.journal import MemoryJournal
from callresilience.servicenow import (
    ApiKey,
    Auth,
    BasicAuth,
    BearerToken,
    OAuth2ClientCredentials,
    OAuth2Password,
    OAuth2RefreshToken,
    ServiceNowClient,
)
from callresilience.testing import (
    DropResponse,
    ExpireTokens,
    FakeServiceNow,
    ManualClock,
    RateLimit,
    RefuseConnections,
    ServiceUnavailable,
)

from ..cli._helpers import run
from ..cli.test_logging_hygiene import CY, Recording, number_forms, run_scenario, shown
from ..engine.conftest import ADA, BEN, RecordingChannel, Rig, make_config

pytestmark = pytest.mark.anyio

USER = "svc-cti"
PASSWORD = "Pw-secrets-5150"
CLIENT_ID = "cti-app"
CLIENT_SECRET = "Cs-secrets-8086"
API_KEY = "Ak-secrets-6502"
WRONG = {
    "password": "Pw-wrong-2600",
    "client_secret": "Cs-wrong-1701",
    "token": "Tk-wrong-7474",
    "api_key": "Ak-wrong-3456",
    "refresh_token": "Rt-wrong-9000",
}
E164 = re.compile(r"\+[0-9]{7,15}")


def basic(user: str, password: str) -> str:
    """The Authorization value basic auth sends."""
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def errors(monkeypatch: pytest.MonkeyPatch) -> list[CallResilienceError]:
    """Every library error created while the test runs (raised, logged or swallowed)."""
    made: list[CallResilienceError] = []

    def remember(self: CallResilienceError, *args: object) -> None:
        made.append(self)
        Exception.__init__(self, *args)

    monkeypatch.setattr(CallResilienceError, "__init__", remember)
    return made


@contextlib.asynccontextmanager
async def expiring_rig(auth: Auth) -> AsyncIterator[tuple[Rig, Recording, FakeServiceNow]]:
    """An engine against a fake whose tokens live 40 s, with outages, 503s, 429s and 401s."""
    clock = ManualClock()
    fake = FakeServiceNow(
        clock=clock,
        user=USER,
        password=PASSWORD,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        api_key=API_KEY,
        token_ttl=40.0,
    )
    for fault, start, duration, options in [
        (ServiceUnavailable(retry_after=3), 4, 8, {}),
        (RefuseConnections(), 18, 15, {}),
        (ExpireTokens(), 40, 2, {}),
        (DropResponse(), 55, 8, {"methods": {"POST"}, "tables": {"interaction"}}),
        (ExpireTokens(), 70, 1, {}),
        (RateLimit(2, per="second"), 80, 15, {}),
    ]:
        fake.faults.add(fault, start=start, duration=duration, **options)
    channel = RecordingChannel(clock)
    channel.unreachable.add("cy")
    transport = Recording(fake.transport())
    config = make_config(
        auth=auth,
        records=RecordMapping(work_item_table="u_missing_work_item"),
        router=RouterConfig(offer_timeout=20, reject_delay=5, no_answer_delay=10),
    )
    engine = Engine(config, channel, clock=clock, transport=transport, store=MemoryJournal())
    events: list[Any] = []
    engine.subscribe(events.append)
    async with engine:
        for agent in (ADA, BEN, CY):
            await engine.login(agent, ready=True)
        yield Rig(clock, fake, channel, engine, events), transport, fake


async def refused_clients(fake: FakeServiceNow, transport: Recording) -> list[str]:
    """Wrong credentials of every kind against the fake; return the reprs of their clients."""
    wrong: list[Auth] = [
        BasicAuth(USER, WRONG["password"]),
        BearerToken(WRONG["token"]),
        ApiKey(WRONG["api_key"]),
        OAuth2ClientCredentials(CLIENT_ID, WRONG["client_secret"]),
        OAuth2Password(CLIENT_ID, CLIENT_SECRET, USER, WRONG["password"]),
        OAuth2RefreshToken(CLIENT_ID, CLIENT_SECRET, WRONG["refresh_token"]),
    ]
    reprs = []
    for auth in wrong:
        async with ServiceNowClient(
            "https://fake.service-now.com", auth=auth, transport=transport, clock=fake.clock
        ) as client:
            reprs += [repr(auth), repr(client)]
            with pytest.raises(CallResilienceError):
                await client.probe()
    return reprs


@pytest.mark.parametrize(
    "auth",
    [
        OAuth2ClientCredentials(CLIENT_ID, CLIENT_SECRET, refresh_margin=5),
        BasicAuth(USER, PASSWORD),
    ],
    ids=["oauth2-client-credentials", "basic"],
)
async def test_a_faulty_run_shows_no_secret_and_no_number_anywhere(
    auth: Auth,
    errors: list[CallResilienceError],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Logs, reprs, errors, events and journal entries of a faulty run hold no secret."""
    caplog.set_level(logging.DEBUG)
    async with expiring_rig(auth) as (rig, transport, fake):
        await run_scenario(rig)
        reprs = [repr(auth), repr(rig.engine.router.snapshot()), repr(rig.engine)]
        reprs += [repr(make_config(auth=auth)), repr(fake), repr(rig.engine.drainer)]
        reprs += await refused_clients(fake, transport)
        entries = await rig.engine.journal.list(limit=10_000)
        status = await rig.engine.status()
    tokens = {t for t in transport.tokens if t not in WRONG.values()}
    if isinstance(auth, OAuth2ClientCredentials):
        assert len(tokens) >= 3  # first token, renewal at expiry, renewals after the 401s
    secrets = {PASSWORD, CLIENT_SECRET, API_KEY, basic(USER, PASSWORD), *tokens}
    secrets |= {*WRONG.values(), basic(USER, WRONG["password"])}

    lines = shown(caplog.records)
    assert len(lines) > 100
    sources = {record.name for record in caplog.records}
    assert {"callresilience.servicenow", "callresilience.journal", "httpx"} <= sources
    messages = [str(error) for error in errors]
    assert any("401" in m for m in messages)  # the 401s were met and reported
    assert len(messages) > 20
    said = [
        *lines,
        *reprs,
        *messages,
        *(repr(event) for event in rig.events),
        *(repr(entry) for entry in entries),
        *(entry.last_error or "" for entry in entries),
        repr(status),
    ]
    text = "\n".join(said)
    for secret in secrets:
        assert secret not in text, secret
    # Numbers: logs, errors and reprs; the journal's payloads must hold them, so not those.
    public = "\n".join([*lines, *reprs, *messages, *(repr(e) for e in rig.events)])
    for form in number_forms():
        assert form not in public
    assert not E164.search(public)


def test_check_with_credentials_in_the_environment_prints_no_secret(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """`callresilience check`, passing and refused, for basic and client credentials."""
    caplog.set_level(logging.DEBUG)
    fake = FakeServiceNow(
        user=USER, password=PASSWORD, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    base = {"CALLRESILIENCE_INSTANCE": "https://acme.service-now.com"}
    basic_env = {**base, "CALLRESILIENCE_USERNAME": USER}
    oauth_env = {**base, "CALLRESILIENCE_AUTH": "oauth-client-credentials"}
    oauth_env["CALLRESILIENCE_CLIENT_ID"] = CLIENT_ID
    runs = [
        ({**basic_env, "CALLRESILIENCE_PASSWORD": PASSWORD}, 0),
        ({**basic_env, "CALLRESILIENCE_PASSWORD": WRONG["password"]}, 1),
        ({**oauth_env, "CALLRESILIENCE_CLIENT_SECRET": CLIENT_SECRET}, 0),
        ({**oauth_env, "CALLRESILIENCE_CLIENT_SECRET": WRONG["client_secret"]}, 1),
    ]
    transport = Recording(fake.transport())
    for environ, expected in runs:
        assert run(_check.register, ["check"], transport=transport, environ=environ) == expected
    captured = capsys.readouterr()
    assert captured.out.count("FAIL  auth") == 2
    text = captured.out + captured.err + "\n".join(shown(caplog.records))
    secrets = {PASSWORD, CLIENT_SECRET, basic(USER, PASSWORD), *transport.tokens}
    secrets |= {WRONG["password"], WRONG["client_secret"], basic(USER, WRONG["password"])}
    assert len(transport.tokens) >= 2
    for secret in secrets:
        assert secret not in text, secret
    for environ, _ in runs:
        assert PASSWORD not in repr(_check.load_config(environ))
        assert CLIENT_SECRET not in repr(_check.load_config(environ))


def test_simulate_with_credentials_in_the_environment_prints_no_secret(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A short simulated outage: output and logs hold no secret and no full number."""
    for name, value in [
        ("PASSWORD", PASSWORD),
        ("CLIENT_SECRET", CLIENT_SECRET),
        ("TOKEN", WRONG["token"]),
        ("API_KEY", API_KEY),
        ("REFRESH_TOKEN", WRONG["refresh_token"]),
    ]:
        monkeypatch.setenv(f"CALLRESILIENCE_{name}", value)
    caplog.set_level(logging.DEBUG)
    argv = ["--speed", "100", "--duration", "10s", "--agents", "3", "--rate", "1"]
    argv += ["--outage", "3s@2s", "--seed", "3", "--plain"]
    assert main(["simulate", *argv]) == 0
    captured = capsys.readouterr()
    lines = shown(caplog.records)
    assert "nothing lost, nothing duplicated" in captured.out
    assert len(lines) > 10
    text = captured.out + captured.err + "\n".join(lines)
    # The simulator's own throwaway credentials for its fake are secrets too.
    secrets = {PASSWORD, CLIENT_SECRET, API_KEY, *WRONG.values(), "sim-password"}
    for secret in (*secrets, basic("sim", "sim-password")):
        assert secret not in text, secret
    assert not E164.search(text)
