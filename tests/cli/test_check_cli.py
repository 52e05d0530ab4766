"""`callresilience check`: every check, every failure's message, read-only, and no secret shown."""

from __future__ import annotations

import base64
import io
import json
import logging
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from callresilience.cli import _check
from callresilience.testing import (
    FakeServiceNow,
    Fault,
    Hibernating,
    ManualClock,
    RefuseConnections,
    ServiceUnavailable,
)

from ._helpers import run

pytestmark = pytest.mark.anyio

USER = "svc-cti"
PASSWORD = "Pw-7f3c9e1b2a"
CLIENT_ID = "cti-app"
CLIENT_SECRET = "Cs-91ab77e0d4"
TOKEN = "Tk-5512aa90ce"
API_KEY = "Ak-00ff11ee22"
REFRESH_TOKEN = "Rt-6b6b6b6b6b"
SECRETS = (
    PASSWORD,
    CLIENT_SECRET,
    TOKEN,
    API_KEY,
    REFRESH_TOKEN,
    base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
)
URL = "https://acme.service-now.com"


def env(**changes: str | None) -> dict[str, str]:
    """The variables of a basic-auth check, with `changes` (None removes one)."""
    variables: dict[str, str | None] = {"INSTANCE": URL, "USERNAME": USER, "PASSWORD": PASSWORD}
    variables.update(changes)
    return {f"CALLRESILIENCE_{k}": v for k, v in variables.items() if v is not None}


class Recording(httpx.AsyncBaseTransport):
    """Passes requests on, writing down each method and path and every token it sees."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.sent: list[tuple[str, str]] = []
        self.tokens: set[str] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.method, request.url.path))
        if "authorization" in request.headers:
            self.tokens.add(request.headers["authorization"].split()[-1])
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith("oauth_token.do"):
            body = json.loads(await response.aread())
            self.tokens |= {body[k] for k in ("access_token", "refresh_token") if k in body}
        return response


def fake() -> FakeServiceNow:
    """A fake instance that knows every credential the tests use."""
    return FakeServiceNow(
        user=USER,
        password=PASSWORD,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        api_key=API_KEY,
    )


async def issued(instance: FakeServiceNow) -> dict[str, str]:
    """Tokens the fake issues for a password grant, as an operator would fetch them."""
    form = {
        "grant_type": "password",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "username": USER,
        "password": PASSWORD,
    }
    async with httpx.AsyncClient(transport=instance.transport(), base_url=URL) as client:
        tokens: dict[str, str] = (await client.post("/oauth_token.do", data=form)).json()
    return tokens


async def check(
    environ: dict[str, str],
    transport: httpx.AsyncBaseTransport,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    *,
    clock: ManualClock | None = None,
    also_secret: tuple[str, ...] = (),
) -> tuple[int, str]:
    """Run the check; assert no secret was printed or logged; return the status and output."""
    caplog.set_level(logging.DEBUG)
    out = io.StringIO()
    code = await _check.run_check(environ, out, transport=transport, clock=clock)
    captured = capsys.readouterr()
    shown = out.getvalue() + captured.out + captured.err + caplog.text
    for secret in (*SECRETS, *also_secret):
        assert secret not in shown
    return code, out.getvalue()


def answer(routes: dict[str, httpx.Response]) -> httpx.MockTransport:
    """A transport answering GETs by table; every other request fails the test."""

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.method == "GET"
        table = request.url.path.rsplit("/", 1)[-1]
        return routes.get(table) or httpx.Response(200, json={"result": [{"sys_id": "a" * 32}]})

    return httpx.MockTransport(handle)


def failing(error: Callable[[httpx.Request], Exception]) -> httpx.MockTransport:
    """A transport whose every request raises what `error` builds."""

    def handle(request: httpx.Request) -> httpx.Response:
        raise error(request)

    return httpx.MockTransport(handle)


def line(output: str, verdict: str, step: str) -> str:
    """The one output line with this verdict and step (and the first of several)."""
    found = [x for x in output.splitlines() if x.split()[:2] == [verdict, step]]
    assert found, output
    return found[0]


# -- everything passes -----------------------------------------------------------------------


async def test_all_checks_pass_with_basic_auth_and_only_reads(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Against a healthy fake: six passes, exit 0, and only GET requests sent."""
    instance = fake()
    transport = Recording(instance.transport())
    code, out = await check(env(), transport, caplog, capsys)
    assert code == 0, out
    assert out.splitlines()[0] == f"checking {URL} with basic auth as {USER}"
    assert "all 6 checks passed" in out
    assert "interaction: readable (0 records)" in out
    assert {method for method, _ in transport.sent} == {"GET"}
    assert {r.method for r in instance.requests} == {"GET"}
    paths = {path for _, path in transport.sent}
    assert paths == {
        f"/api/now/table/{t}" for t in ("sys_user", "interaction", "sn_openframe_phone_log")
    }


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("oauth-client-credentials", {}),
        ("oauth-password", {}),
        ("bearer", {"TOKEN": None}),
        ("api-key", {"API_KEY": API_KEY}),
    ],
)
async def test_other_auth_kinds_send_only_reads_and_the_token_request(
    kind: str,
    extra: dict[str, str | None],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """OAuth2 adds one token POST; nothing else but GETs; tokens never appear."""
    instance = fake()
    transport = Recording(instance.transport())
    variables = env(AUTH=kind, CLIENT_ID=CLIENT_ID, CLIENT_SECRET=CLIENT_SECRET, **extra)
    if kind == "bearer":
        # A token the fake issued, fetched beforehand as an operator would.
        variables["CALLRESILIENCE_TOKEN"] = (await issued(instance))["access_token"]
        transport.tokens.add(variables["CALLRESILIENCE_TOKEN"])
    code, out = await check(variables, transport, caplog, capsys)
    assert code == 0, out
    posts = [path for method, path in transport.sent if method != "GET"]
    assert posts == (["/oauth_token.do"] if kind.startswith("oauth") else [])
    shown = out + caplog.text
    assert not any(token in shown for token in transport.tokens)


async def test_refresh_token_grant(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """The refresh-token grant works from a refresh token the fake issued."""
    instance = fake()
    refresh = (await issued(instance))["refresh_token"]
    variables = env(
        AUTH="oauth-refresh-token",
        CLIENT_ID=CLIENT_ID,
        CLIENT_SECRET=CLIENT_SECRET,
        REFRESH_TOKEN=refresh,
    )
    code, out = await check(
        variables, Recording(instance.transport()), caplog, capsys, also_secret=(refresh,)
    )
    assert code == 0, out


def test_the_registered_command_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`callresilience check` reads os.environ and takes the hidden transport."""
    for name, value in env().items():
        monkeypatch.setenv(name, value)
    assert run(_check.register, ["check"], transport=fake().transport()) == 0
    assert "all 6 checks passed" in capsys.readouterr().out


def test_the_registered_command_takes_a_hidden_environment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The hidden `environ` replaces os.environ, for tests."""
    code = run(_check.register, ["check"], transport=fake().transport(), environ=env(USERNAME=None))
    assert code == 2
    assert "CALLRESILIENCE_USERNAME is not set" in capsys.readouterr().err


# -- latency ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "slow"), [(0.25, False), (3.0, True)])
async def test_latency_is_the_median_of_the_probes(
    seconds: float,
    slow: bool,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each probe's time on the clock is reported; a slow median adds a warning."""
    clock = ManualClock()

    def handle(request: httpx.Request) -> httpx.Response:
        clock.advance(seconds)
        return httpx.Response(200, json={"result": []})

    code, out = await check(env(), httpx.MockTransport(handle), caplog, capsys, clock=clock)
    assert code == 0
    ms = f"{seconds * 1000:.0f} ms"
    assert f"3 probes: median {ms}, max {ms}" in line(out, "PASS", "latency")
    assert ("WARN  latency  slow" in out) is slow


async def test_a_probe_failing_during_the_latency_step_fails_it(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A probe that meets a 503 after the first one worked fails the latency check."""
    calls = 0

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200 if calls == 1 else 503, json={"result": []})

    code, out = await check(env(), httpx.MockTransport(handle), caplog, capsys)
    assert code == 1
    assert "a probe failed" in line(out, "FAIL", "latency")


# -- failures --------------------------------------------------------------------------------


async def test_wrong_password_is_an_auth_failure(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 401 passes reach, fails auth, and skips the rest."""
    wrong = "Pw-wrong-0000"
    code, out = await check(
        env(PASSWORD=wrong), fake().transport(), caplog, capsys, also_secret=(wrong,)
    )
    assert code == 1
    assert "PASS  reach" in out
    assert "refused (401)" in line(out, "FAIL", "auth")
    assert "1 of 2 checks failed" in out


async def test_refused_oauth_grant_says_so(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong client secret: the token endpoint refused the grant."""
    wrong = "Cs-wrong-0000"
    variables = env(AUTH="oauth-client-credentials", CLIENT_ID=CLIENT_ID, CLIENT_SECRET=wrong)
    code, out = await check(variables, fake().transport(), caplog, capsys, also_secret=(wrong,))
    assert code == 1
    assert "the token endpoint refused the grant" in line(out, "FAIL", "auth")


async def test_a_token_that_stops_working_is_an_auth_failure_on_the_table(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 401 on a table read after the probe passed fails that table's read."""
    refused = httpx.Response(401, json={"error": {"message": "User Not Authenticated"}})
    code, out = await check(env(), answer({"interaction": refused}), caplog, capsys)
    assert code == 1
    assert "interaction: basic auth as svc-cti: refused (401)" in line(out, "FAIL", "read")


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (
            lambda r: httpx.ConnectError("x", request=r),
            "cannot connect to acme.service-now.com:443",
        ),
        (
            lambda r: _caused(
                httpx.ConnectError("[Errno -2]", request=r),
                socket.gaierror(-2, "Name or service not known"),
            ),
            "cannot resolve acme.service-now.com (DNS)",
        ),
        (
            lambda r: _caused(
                httpx.ConnectError("refused", request=r),
                ConnectionRefusedError(111, "Connection refused"),
            ),
            "connection refused by acme.service-now.com:443",
        ),
        (
            lambda r: _caused(
                httpx.ConnectError("tls", request=r),
                ssl.SSLCertVerificationError(1, "certificate verify failed"),
            ),
            "the TLS certificate of acme.service-now.com did not verify",
        ),
        (
            lambda r: _caused(
                httpx.ConnectError("tls", request=r), ssl.SSLError(1, "wrong version")
            ),
            "the TLS handshake with acme.service-now.com:443 failed",
        ),
        (
            lambda r: httpx.ConnectTimeout("slow", request=r),
            "no connection to acme.service-now.com:443 within 5 s",
        ),
        (lambda r: httpx.ReadTimeout("slow", request=r), "no answer within 10 s"),
        (lambda r: httpx.RemoteProtocolError("broken", request=r), "no usable answer"),
    ],
)
async def test_network_failures_say_what_happened(
    error: Callable[[httpx.Request], Exception],
    words: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """DNS, refused, TLS, timeouts and broken answers each get their own message."""
    code, out = await check(env(), failing(error), caplog, capsys)
    assert code == 1
    assert words in line(out, "FAIL", "reach")
    assert "SKIP  auth" in out


def _caused(error: Exception, cause: BaseException) -> Exception:
    error.__cause__ = cause
    return error


async def test_a_closed_port_on_loopback_is_connection_refused(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real refused connection (a closed port on 127.0.0.1) reads 'connection refused'."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    environ = env(INSTANCE=f"http://127.0.0.1:{port}")
    out = io.StringIO()
    assert await _check.run_check(environ, out) == 1
    assert f"connection refused by 127.0.0.1:{port}" in out.getvalue()
    assert "WARN  tls      plain http" in out.getvalue()


def faulty(fault: Fault) -> httpx.AsyncBaseTransport:
    """The fake's transport, with `fault` on every request."""
    instance = fake()
    instance.faults.add(fault)
    return instance.transport()


def probe_answers(response: httpx.Response) -> Callable[[], httpx.AsyncBaseTransport]:
    """A transport whose probe table answers `response`."""
    return lambda: answer({"sys_user": response})


@pytest.mark.parametrize(
    ("transport", "words"),
    [
        (lambda: faulty(RefuseConnections()), "cannot connect"),
        (lambda: faulty(Hibernating()), "the instance is hibernating"),
        (lambda: faulty(ServiceUnavailable()), "the instance answered 503"),
        (
            probe_answers(
                httpx.Response(200, text="<html>Down</html>", headers={"content-type": "text/html"})
            ),
            "an HTML page came instead of the API's JSON",
        ),
        (
            probe_answers(httpx.Response(302, headers={"Location": "https://login.example.com"})),
            "a redirect (302)",
        ),
        (probe_answers(httpx.Response(418, json={"error": {"message": "I'm a teapot"}})), "418"),
    ],
    ids=["refused", "hibernating", "unavailable", "html", "redirect", "other"],
)
async def test_answers_other_than_the_api_fail_reach(
    transport: Callable[[], httpx.AsyncBaseTransport],
    words: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Refused, hibernating, 503, an HTML page, a redirect or another refusal each fail reach."""
    code, out = await check(env(), transport(), caplog, capsys)
    assert code == 1
    assert words in line(out, "FAIL", "reach")


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({"Retry-After": "30", "X-RateLimit-Rule": "f2a1"}, "rate limit rule (rule f2a1)"),
        ({}, "refuses the integration user's requests for now;"),
    ],
)
async def test_rate_limited(
    headers: dict[str, str],
    words: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A 429 says rate limited, with the wait and the rule when the instance gives them."""
    limited = httpx.Response(429, headers=headers, json={"error": {"message": "Rate limit"}})
    code, out = await check(env(), answer({"sys_user": limited}), caplog, capsys)
    assert code == 1
    reach = line(out, "FAIL", "reach")
    assert "rate limited (429)" in reach
    assert words in reach
    assert ("retry after 30 s" in reach) is bool(headers)


@pytest.mark.parametrize(
    ("table", "status", "message", "words"),
    [
        (
            "sn_openframe_phone_log",
            403,
            "User Not Authorized",
            "read refused (403 User Not Authorized)",
        ),
        ("interaction", 404, None, "no such table (404 Not Found)"),
        ("interaction", 400, "Invalid table interaction", "no such table (400 Invalid table"),
        ("interaction", 409, "Conflict", "409"),
        ("interaction", 503, None, "503"),
    ],
)
async def test_table_read_failures(
    table: str,
    status: int,
    message: str | None,
    words: str,
    *,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A 403, a missing table (404 or 400 Invalid table), or another error fails that table."""
    body = {"error": {"message": message, "detail": None}, "status": "failure"}
    code, out = await check(
        env(), answer({table: httpx.Response(status, json=body)}), caplog, capsys
    )
    assert code == 1
    failed = line(out, "FAIL", "read")
    assert failed.split()[2] == f"{table}:"
    assert words in failed
    assert "PASS  read     sys_user" in out


async def test_a_missing_table_on_the_fake(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fake's 'Invalid table' for a table that does not exist reads as a missing table."""
    code, out = await check(env(PHONE_LOG_TABLE="u_phone_log"), fake().transport(), caplog, capsys)
    assert code == 1
    assert "u_phone_log: no such table" in line(out, "FAIL", "read")


async def test_a_forbidden_probe_table(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 403 on the probe table passes auth but says the health probe cannot read it."""
    forbidden = httpx.Response(403, json={"error": {"message": "User Not Authorized"}})
    code, out = await check(env(), answer({"sys_user": forbidden}), caplog, capsys)
    assert code == 1
    assert "PASS  auth" in out
    assert "the engine's health probe reads it" in line(out, "FAIL", "read")
    assert "3 probes" in line(out, "PASS", "latency")  # answered, so the time counts


async def test_total_count_missing_counts_what_came(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without X-Total-Count the records that came back are counted."""
    code, out = await check(env(), answer({}), caplog, capsys)
    assert code == 0
    assert "interaction: readable (1 record(s) seen)" in out


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"INSTANCE": None}, "CALLRESILIENCE_INSTANCE is not set"),
        ({"INSTANCE": "acme.service-now.com"}, "not an http(s) URL"),
        ({"INSTANCE": "ftp://acme.service-now.com"}, "not an http(s) URL"),
        ({"INSTANCE": f"https://{USER}:{PASSWORD}@acme.service-now.com"}, "holds credentials"),
        ({"INSTANCE": f"{URL}/api/now"}, "without a path"),
        ({"AUTH": "kerberos"}, "'kerberos' is not known"),
        ({"AUTH": "oauth-magic", "CLIENT_ID": "a", "CLIENT_SECRET": "b"}, "not known"),
        ({"USERNAME": None}, "CALLRESILIENCE_USERNAME is not set"),
        ({"PASSWORD": None}, "CALLRESILIENCE_PASSWORD (or CALLRESILIENCE_PASSWORD_FILE) is not"),
        ({"PASSWORD": f"{PASSWORD}\n"}, "password: must not contain a line break"),
        ({"USERNAME": "a:b"}, "must not contain ':'"),
        ({"AUTH": "bearer"}, "CALLRESILIENCE_TOKEN"),
        ({"AUTH": "api-key"}, "CALLRESILIENCE_API_KEY"),
        ({"AUTH": "oauth-client-credentials"}, "CALLRESILIENCE_CLIENT_ID is not set"),
        ({"AUTH": "oauth-client-credentials", "CLIENT_ID": "a"}, "CALLRESILIENCE_CLIENT_SECRET"),
        (
            {"AUTH": "oauth-refresh-token", "CLIENT_ID": "a", "CLIENT_SECRET": CLIENT_SECRET},
            "CALLRESILIENCE_REFRESH_TOKEN",
        ),
        (
            {
                "AUTH": "oauth-client-credentials",
                "CLIENT_ID": "a",
                "CLIENT_SECRET": CLIENT_SECRET,
                "TOKEN_PATH": "oauth_token.do",
            },
            "token_path",
        ),
        ({"CONNECT_TIMEOUT": "soon"}, "CALLRESILIENCE_CONNECT_TIMEOUT: 'soon' is not a number"),
        ({"READ_TIMEOUT": "0"}, "CALLRESILIENCE_READ_TIMEOUT: '0'"),
        ({"READ_TIMEOUT": "inf"}, "CALLRESILIENCE_READ_TIMEOUT"),
        ({"VERIFY_TLS": "/no/such/ca.pem"}, "neither true/false nor a readable CA bundle"),
        ({"PHONE_LOG_TABLE": "Phone Log"}, "CALLRESILIENCE_PHONE_LOG_TABLE: 'Phone Log'"),
        ({"PASSWORD_FILE": "/no/such/file"}, "not both"),
    ],
)
async def test_bad_configuration_is_exit_2(
    changes: dict[str, str | None],
    words: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each missing or invalid variable is named, a secret's value never shown; exit 2."""
    caplog.set_level(logging.DEBUG)
    out = io.StringIO()
    assert await _check.run_check(env(**changes), out, transport=fake().transport()) == 2
    assert out.getvalue() == ""
    err = capsys.readouterr().err
    assert words in err
    for secret in SECRETS:
        assert secret not in err + caplog.text


async def test_secrets_from_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A `<NAME>_FILE` variable reads the secret from a file, without its trailing newline."""
    secret_file = tmp_path / "password"
    secret_file.write_text(PASSWORD + "\n")
    code, out = await check(
        env(PASSWORD=None, PASSWORD_FILE=str(secret_file)), fake().transport(), caplog, capsys
    )
    assert code == 0, out


async def test_an_unreadable_secret_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A `<NAME>_FILE` that cannot be read is named, with the reason."""
    environ = env(PASSWORD=None, PASSWORD_FILE=str(tmp_path / "missing"))
    assert await _check.run_check(environ, io.StringIO()) == 2
    assert "CALLRESILIENCE_PASSWORD_FILE: cannot read" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "verify"), [("false", False), ("no", False), ("1", True)])
def test_verify_tls_switch(text: str, verify: bool) -> None:
    """VERIFY_TLS takes true/false words."""
    assert _check.load_config(env(VERIFY_TLS=text)).verify is verify


def test_verify_tls_with_a_ca_bundle() -> None:
    """VERIFY_TLS may name a CA bundle, which becomes an SSL context."""
    bundle = ssl.get_default_verify_paths().cafile or ssl.get_default_verify_paths().openssl_cafile
    if not bundle or not Path(bundle).is_file():  # pragma: no cover (depends on the system)
        pytest.skip("no CA bundle file on this system")
    assert isinstance(_check.load_config(env(VERIFY_TLS=bundle)).verify, ssl.SSLContext)


async def test_verification_off_warns(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """With verification off, a warning line says so."""
    code, out = await check(env(VERIFY_TLS="false"), fake().transport(), caplog, capsys)
    assert code == 0
    assert "WARN  tls      certificate verification is off" in out


def test_config_defaults_and_options() -> None:
    """Defaults: verify on, 5 s connect, 10 s read, the engine's tables; each can be changed."""
    config = _check.load_config(env())
    assert (config.verify, config.connect_timeout, config.read_timeout) == (True, 5.0, 10.0)
    assert config.tables == ("interaction", "sn_openframe_phone_log")
    assert config.instance == URL
    assert PASSWORD not in repr(config)
    changed = _check.load_config(
        env(
            INSTANCE=f"{URL}/",
            CONNECT_TIMEOUT="2.5",
            READ_TIMEOUT="20",
            PROBE_TABLE="sys_user",
            INTERACTION_TABLE="u_interaction",
            PHONE_LOG_TABLE="u_phone_log",
            AUTH="oauth-password",
            CLIENT_ID=CLIENT_ID,
            CLIENT_SECRET=CLIENT_SECRET,
            OAUTH_SCOPE="useraccount",
        )
    )
    assert changed.instance == URL
    assert (changed.connect_timeout, changed.read_timeout) == (2.5, 20.0)
    assert changed.tables == ("u_interaction", "u_phone_log")
    assert changed.who == f"OAuth2 (password) as client {CLIENT_ID}, user {USER}"
