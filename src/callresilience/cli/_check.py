"""`callresilience check`: can this machine reach the instance, sign in, and read the tables?

Configured from ``CALLRESILIENCE_*`` environment variables (see `load_config` and
``docs/operations.md``). It only reads: a probe of the health-probe table, a few more for the
latency, and one record of each table the engine writes; with OAuth2, the token request too.

Exit status: 0 every check passed; 1 at least one failed; 2 the configuration is incomplete or
invalid. Secrets are never printed: messages name the variable, never its value.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import ssl
import statistics
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Final, TextIO

import attrs
import httpx

from .._clock import Clock, SystemClock
from .._errors import (
    AuthenticationError,
    InvalidInput,
    PermanentError,
    RateLimited,
    ServiceNowError,
)
from ..servicenow import (
    ApiKey,
    Auth,
    BasicAuth,
    BearerToken,
    OAuth2ClientCredentials,
    OAuth2Password,
    OAuth2RefreshToken,
    ServiceNowClient,
)
from ..servicenow._checks import TABLE_RE

__all__ = ["CheckConfig", "ConfigError", "load_config", "register", "run_check"]

EXIT_FAILED: Final = 1
EXIT_CONFIG: Final = 2

PREFIX: Final = "CALLRESILIENCE_"
#: Variables that hold secrets; each may instead name a file with ``<NAME>_FILE``.
SECRETS: Final = ("PASSWORD", "CLIENT_SECRET", "REFRESH_TOKEN", "TOKEN", "API_KEY")
AUTH_KINDS: Final = (
    "basic",
    "oauth-client-credentials",
    "oauth-password",
    "oauth-refresh-token",
    "bearer",
    "api-key",
)
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
_SLOW: Final = 2.0  # seconds: a median probe above this is worth a warning


class ConfigError(Exception):
    """The environment does not configure a check; the message names the variable."""


@attrs.frozen
class CheckConfig:
    """What `callresilience check` talks to, read from the environment.

    Attributes:
        instance: The instance's base URL.
        auth: The credentials (their secrets never appear in a repr).
        who: How to name the credentials in the output: kind and user or client id.
        connect_timeout: Seconds to open a connection.
        read_timeout: Seconds to wait for an answer.
        verify: TLS verification: True, False, or a context trusting a CA bundle.
        probe_table: The table the engine's health probe reads.
        tables: The tables the engine writes (Interaction, phone log), checked for reading.
        probes: How many probes measure the latency.
    """

    instance: str
    auth: Auth = attrs.field(repr=False)
    who: str
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    verify: bool | ssl.SSLContext = True
    probe_table: str = "sys_user"
    tables: tuple[str, ...] = ("interaction", "sn_openframe_phone_log")
    probes: int = 3


class _Env:
    """Reads ``CALLRESILIENCE_*`` variables; never puts a secret's value in a message."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self._environ.get(PREFIX + name, "").strip()
        return value or default

    def text(self, name: str, default: str) -> str:
        return self.get(name) or default

    def table(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if not TABLE_RE.fullmatch(value):
            raise ConfigError(
                f"{PREFIX}{name}: {value!r} is not a table name (lowercase letters, digits, '_')"
            )
        return value

    def need(self, name: str, why: str) -> str:
        value = self.get(name)
        if value is None:
            raise ConfigError(f"{PREFIX}{name} is not set; {why}")
        return value

    def secret(self, name: str, why: str) -> str:
        direct = self._environ.get(PREFIX + name)
        path = self.get(f"{name}_FILE")
        if direct and path:
            raise ConfigError(f"set {PREFIX}{name} or {PREFIX}{name}_FILE, not both")
        if path:
            try:
                value = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                reason = getattr(error, "strerror", None) or type(error).__name__
                raise ConfigError(f"{PREFIX}{name}_FILE: cannot read {path} ({reason})") from None
            value = value.removesuffix("\n").removesuffix("\r")
        else:
            value = direct or ""
        if not value:
            raise ConfigError(f"{PREFIX}{name} (or {PREFIX}{name}_FILE) is not set; {why}")
        return value

    def seconds(self, name: str, default: float) -> float:
        text = self.get(name)
        if text is None:
            return default
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0 < value < float("inf"):
            raise ConfigError(f"{PREFIX}{name}: {text!r} is not a number of seconds above 0")
        return value


def load_config(environ: Mapping[str, str]) -> CheckConfig:
    """Read the check's configuration from ``CALLRESILIENCE_*`` variables.

    Raises:
        ConfigError: A variable is missing or invalid; the message says which and why.
    """
    env = _Env(environ)
    instance = env.need(
        "INSTANCE", "give the instance's base URL, e.g. https://acme.service-now.com"
    )
    url = httpx.URL(instance) if "://" in instance else None
    if url is None or url.scheme not in ("https", "http") or not url.host:
        raise ConfigError(
            f"{PREFIX}INSTANCE: not an http(s) URL; give the instance's base URL, e.g. "
            "https://acme.service-now.com"
        )
    if url.userinfo:
        raise ConfigError(
            f"{PREFIX}INSTANCE: holds credentials; remove them from the URL and use "
            f"{PREFIX}USERNAME and {PREFIX}PASSWORD"
        )
    if url.query or url.fragment or url.path not in ("", "/"):
        raise ConfigError(
            f"{PREFIX}INSTANCE: give the base URL only (scheme and host), without a path"
        )
    auth, who = _auth(env)
    try:
        return CheckConfig(
            instance=f"{url.scheme}://{url.netloc.decode('ascii')}",
            auth=auth,
            who=who,
            connect_timeout=env.seconds("CONNECT_TIMEOUT", 5.0),
            read_timeout=env.seconds("READ_TIMEOUT", 10.0),
            verify=_verify(env),
            probe_table=env.table("PROBE_TABLE", "sys_user"),
            tables=(
                env.table("INTERACTION_TABLE", "interaction"),
                env.table("PHONE_LOG_TABLE", "sn_openframe_phone_log"),
            ),
        )
    except InvalidInput as error:  # pragma: no cover (every field is checked above)
        raise ConfigError(str(error)) from None


def _auth(env: _Env) -> tuple[Auth, str]:
    kind = env.text("AUTH", "basic").lower()
    try:
        if kind == "basic":
            user = env.need("USERNAME", "basic auth needs the integration user's name")
            password = env.secret("PASSWORD", "basic auth needs the user's password")
            return BasicAuth(user, password), f"basic auth as {user}"
        if kind == "bearer":
            return BearerToken(env.secret("TOKEN", "bearer auth needs a token")), "a bearer token"
        if kind == "api-key":
            key = env.secret("API_KEY", "api-key auth needs the key")
            header = env.text("API_KEY_HEADER", "x-sn-apikey")
            return ApiKey(key, header), f"an API key in {header}"
        if kind.startswith("oauth-"):
            return _oauth(env, kind)
    except InvalidInput as error:
        # The library's message names the field, never its value.
        raise ConfigError(f"the {kind} credentials: {error}") from None
    raise ConfigError(f"{PREFIX}AUTH: {kind!r} is not known; use one of {', '.join(AUTH_KINDS)}")


def _oauth(env: _Env, kind: str) -> tuple[Auth, str]:
    client_id = env.need("CLIENT_ID", "OAuth2 needs the OAuth application's client id")
    secret = env.secret("CLIENT_SECRET", "OAuth2 needs the application's client secret")
    scope = env.get("OAUTH_SCOPE")
    path = env.text("TOKEN_PATH", "/oauth_token.do")
    who = f"OAuth2 ({kind.removeprefix('oauth-')}) as client {client_id}"
    if kind == "oauth-client-credentials":
        return OAuth2ClientCredentials(client_id, secret, scope=scope, token_path=path), who
    if kind == "oauth-password":
        user = env.need("USERNAME", "the OAuth2 password grant needs the user's name")
        password = env.secret("PASSWORD", "the OAuth2 password grant needs the user's password")
        grant = OAuth2Password(client_id, secret, user, password, scope=scope, token_path=path)
        return grant, f"{who}, user {user}"
    if kind == "oauth-refresh-token":
        token = env.secret("REFRESH_TOKEN", "the refresh token grant needs the refresh token")
        return OAuth2RefreshToken(client_id, secret, token, scope=scope, token_path=path), who
    raise ConfigError(f"{PREFIX}AUTH: {kind!r} is not known; use one of {', '.join(AUTH_KINDS)}")


def _verify(env: _Env) -> bool | ssl.SSLContext:
    text = env.text("VERIFY_TLS", "true")
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    try:
        return ssl.create_default_context(cafile=text)
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(
            f"{PREFIX}VERIFY_TLS: {text!r} is neither true/false nor a readable CA bundle "
            f"({type(error).__name__})"
        ) from None


# -- the command ------------------------------------------------------------------------------


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Add the `check` subcommand.

    Args:
        commands: The sub-parsers of the `callresilience` parser.
        transport: For tests: the HTTP transport to use instead of the network.
        clock: For tests: where latency is measured.
        environ: For tests: the variables to read instead of `os.environ`.
    """
    parser = commands.add_parser(
        "check",
        help="check that the instance is reachable and the tables readable (read-only)",
        description=(
            "Check the ServiceNow instance named by CALLRESILIENCE_INSTANCE: reachability, "
            "latency, authentication, and read access to the health-probe, Interaction and "
            "phone log tables. Sends only GET requests (and the OAuth2 token request). "
            "Exit 0 when every check passes, 1 when one fails, 2 for bad configuration."
        ),
    )
    parser.set_defaults(handler=_handler(transport, clock, environ))


def _handler(
    transport: httpx.AsyncBaseTransport | None,
    clock: Clock | None,
    environ: Mapping[str, str] | None,
) -> Callable[[argparse.Namespace], int]:
    def handle(args: argparse.Namespace) -> int:
        return asyncio.run(
            run_check(
                os.environ if environ is None else environ,
                sys.stdout,
                transport=transport,
                clock=clock,
            )
        )

    return handle


async def run_check(
    environ: Mapping[str, str],
    out: TextIO,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock | None = None,
) -> int:
    """Run every check and print one line each; return the exit status."""
    try:
        config = load_config(environ)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    report = _Report(out)
    report.title(f"checking {config.instance} with {config.who}")
    if config.verify is False:
        report.warn("tls", "certificate verification is off (CALLRESILIENCE_VERIFY_TLS)")
    if config.instance.startswith("http://"):
        report.warn("tls", "plain http: credentials and records travel unencrypted")
    clock = clock or SystemClock()
    client = ServiceNowClient(
        config.instance,
        auth=config.auth,
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        verify=config.verify if transport is None else True,
        transport=transport,
        clock=clock,
        probe_table=config.probe_table,
    )
    async with client:
        await _Checks(config, client, clock, report).run()
    return report.finish()


class _Report:
    def __init__(self, out: TextIO) -> None:
        self._out = out
        self.failed = 0
        self.passed = 0

    def title(self, text: str) -> None:
        print(text, file=self._out)

    def line(self, verdict: str, step: str, text: str) -> None:
        print(f"{verdict:<5} {step:<8} {text}", file=self._out)

    def ok(self, step: str, text: str) -> None:
        self.passed += 1
        self.line("PASS", step, text)

    def fail(self, step: str, text: str) -> None:
        self.failed += 1
        self.line("FAIL", step, text)

    def warn(self, step: str, text: str) -> None:
        self.line("WARN", step, text)

    def skip(self, step: str, text: str) -> None:
        self.line("SKIP", step, text)

    def finish(self) -> int:
        if self.failed:
            total = self.failed + self.passed
            print(f"{self.failed} of {total} checks failed", file=self._out)
            return EXIT_FAILED
        print(f"all {self.passed} checks passed", file=self._out)
        return 0


@attrs.define
class _Checks:
    config: CheckConfig
    client: ServiceNowClient
    clock: Clock
    report: _Report

    async def run(self) -> None:
        report, config = self.report, self.config
        try:
            await self.client.probe()
        except ServiceNowError as error:
            if not self._answered(error):
                report.fail("reach", self._unreachable(error))
                report.skip("auth", "not tried: the instance did not answer")
                return
            if isinstance(error, AuthenticationError):
                report.ok("reach", "the instance answered")
                report.fail("auth", _auth_failure(error, config.who))
                return
            if not isinstance(error, PermanentError) or error.status_code not in (400, 403, 404):
                report.fail("reach", _not_serving(error))
                return
            report.ok("reach", "the instance answered")
            report.ok("auth", f"{config.who}: accepted")
            report.fail("read", _table_failure(config.probe_table, error, probe=True))
        else:
            report.ok("reach", "the instance answered")
            report.ok("auth", f"{config.who}: accepted")
            report.ok("read", f"{config.probe_table}: readable (the engine's health probe)")
        # Timed apart from the first probe, which also paid for the connection and the token.
        await self._latency()
        for table in config.tables:
            await self._table(table)

    def _answered(self, error: ServiceNowError) -> bool:
        return error.status_code is not None or isinstance(error, AuthenticationError)

    def _unreachable(self, error: ServiceNowError) -> str:
        return _network_failure(error, self.config)

    async def _latency(self) -> None:
        times: list[float] = []
        for _ in range(self.config.probes):
            started = self.clock.now()
            try:
                await self.client.probe()
            except PermanentError:
                pass  # answered: the time still counts
            except ServiceNowError as error:
                self.report.fail("latency", f"a probe failed: {error}")
                return
            times.append(self.clock.now() - started)
        median = statistics.median(times)
        text = (
            f"{len(times)} probes: median {_ms(median)}, max {_ms(max(times))} "
            f"(read timeout {self.config.read_timeout:g} s)"
        )
        self.report.ok("latency", text)
        if median > _SLOW:
            self.report.warn(
                "latency",
                "slow: calls are not delayed (the engine never waits on the instance), but "
                "records reach it later and a backlog drains slowly",
            )

    async def _table(self, table: str) -> None:
        try:
            result = await self.client.query(table, fields=["sys_id"], limit=1)
        except AuthenticationError as error:
            self.report.fail("read", f"{table}: {_auth_failure(error, self.config.who)}")
        except PermanentError as error:
            self.report.fail("read", _table_failure(table, error, probe=False))
        except ServiceNowError as error:
            self.report.fail("read", f"{table}: {error}")
        else:
            count = result.total_count
            seen = f"{count} records" if count is not None else f"{len(result)} record(s) seen"
            self.report.ok("read", f"{table}: readable ({seen})")


# -- what each failure means ------------------------------------------------------------------


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _network_failure(error: ServiceNowError, config: CheckConfig) -> str:
    url = httpx.URL(config.instance)
    host = url.host
    where = f"{host}:{url.port or (443 if url.scheme == 'https' else 80)}"
    causes = list(_chain(error))
    cert = next((c for c in causes if isinstance(c, ssl.SSLCertVerificationError)), None)
    # The first kind of cause found in the chain says what went wrong, most specific first.
    meanings: tuple[tuple[type[BaseException], str], ...] = (
        (
            socket.gaierror,
            f"cannot resolve {host} (DNS): check CALLRESILIENCE_INSTANCE for a typo, and this "
            "machine's DNS or proxy settings",
        ),
        (
            ConnectionRefusedError,
            f"connection refused by {where}: nothing listens there (a wrong port, or a "
            "firewall that rejects the connection)",
        ),
        (
            ssl.SSLCertVerificationError,
            f"the TLS certificate of {host} did not verify ({cert and _reason(cert)}): a proxy "
            "that intercepts TLS, or a private CA; set CALLRESILIENCE_VERIFY_TLS to a CA bundle "
            "that trusts it",
        ),
        (
            ssl.SSLError,
            f"the TLS handshake with {where} failed: is it an https port, and does a proxy "
            "interfere?",
        ),
        (
            httpx.ConnectTimeout,
            f"no connection to {where} within {config.connect_timeout:g} s "
            "(CALLRESILIENCE_CONNECT_TIMEOUT): a firewall dropping packets, or a proxy needed",
        ),
        (
            httpx.TimeoutException,
            f"no answer within {config.read_timeout:g} s (CALLRESILIENCE_READ_TIMEOUT): the "
            "instance is overloaded or stuck",
        ),
        (httpx.ConnectError, f"cannot connect to {where}: {error}"),
    )
    for kind, meaning in meanings:
        if any(isinstance(cause, kind) for cause in causes):
            return meaning
    return f"no usable answer: {error}"


def _not_serving(error: ServiceNowError) -> str:
    text = str(error)
    if "hibernat" in text.lower():
        return (
            "the instance is hibernating (it answered with its 'Instance Hibernating' page): "
            "wake it (developer instances sleep when unused) and check again"
        )
    if isinstance(error, RateLimited):
        after = f"; retry after {error.retry_after:g} s" if error.retry_after is not None else ""
        rule = ""
        if error.rate_limit is not None and error.rate_limit.rule:
            rule = f" (rule {error.rate_limit.rule})"
        return (
            f"rate limited (429): a rate limit rule{rule} refuses the integration user's "
            f"requests for now{after}; raise the limit if the engine's traffic hits it"
        )
    if "html page" in text.lower():
        return f"an HTML page came instead of the API's JSON (maintenance or a login page?): {text}"
    status = error.status_code
    if status is not None and 300 <= status < 400:
        return f"a redirect ({status}): CALLRESILIENCE_INSTANCE must be the instance's own URL"
    if status is not None and status >= 500:
        return f"the instance answered {status}: it is up but failing; {error}"
    return str(error)


def _auth_failure(error: AuthenticationError, who: str) -> str:
    if "OAuth2" in str(error):
        return (
            f"{who}: the token endpoint refused the grant ({error.status_code}): check the "
            "client id and secret, the user's credentials, and that the OAuth application is "
            "active"
        )
    return (
        f"{who}: refused (401): check the user name and password (or token), and that the "
        "user is active and has the web service access it needs"
    )


def _table_failure(table: str, error: PermanentError, *, probe: bool) -> str:
    use = " (the engine's health probe reads it)" if probe else ""
    message = (error.sn_message or "").lower()
    if error.status_code == 403:
        return (
            f"{table}: read refused (403 {error.sn_message or 'Forbidden'}){use}: give the "
            "integration user a role whose ACLs allow reading it"
        )
    if error.status_code == 404 or message.startswith("invalid table"):
        return (
            f"{table}: no such table ({error.status_code} {error.sn_message or 'Not Found'})"
            f"{use}: install the plugin that provides it, or name the right table in its "
            "CALLRESILIENCE_*_TABLE variable"
        )
    return f"{table}: {error}"


def _reason(error: ssl.SSLCertVerificationError) -> str:
    return str(getattr(error, "verify_message", None) or getattr(error, "reason", None) or error)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"
