"""The transport choice: any httpx transport, or aiohttp's with its errors kept meaningful."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import aiohttp
import httpx
import pytest

from callresilience import AmbiguousError, InvalidInput, TransientError
from callresilience.servicenow import BasicAuth, ServiceNowClient, aiohttp_transport
from callresilience.servicenow._transport import AiohttpErrors

BASE = "https://example.service-now.com"


class Failing(httpx.AsyncBaseTransport):
    """A transport that fails the way httpx-aiohttp does: an httpx error caused by aiohttp's."""

    def __init__(self, raised: type[httpx.TransportError], cause: BaseException | None) -> None:
        self.raised = raised
        self.cause = cause
        self.closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Raise the configured error."""
        raise self.raised("failed", request=request) from self.cause

    async def aclose(self) -> None:
        """Remember being closed."""
        self.closed = True


@pytest.mark.parametrize(
    ("raised", "cause", "expected"),
    [
        (httpx.ConnectTimeout, aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (httpx.ConnectTimeout, aiohttp.ClientConnectionResetError(), httpx.RemoteProtocolError),
        (httpx.ConnectTimeout, aiohttp.ClientOSError(104, "reset"), httpx.ReadError),
        (httpx.ConnectTimeout, aiohttp.ClientConnectionError(), httpx.ReadError),
        (httpx.TimeoutException, aiohttp.ConnectionTimeoutError(), httpx.ConnectTimeout),
        (httpx.TimeoutException, aiohttp.ServerTimeoutError(), httpx.ReadTimeout),
        (httpx.ReadTimeout, aiohttp.SocketTimeoutError(), httpx.ReadTimeout),
        (httpx.ConnectError, aiohttp.ClientConnectorError(None, OSError(111, "refused")),
         httpx.ConnectError),
        (httpx.ReadError, aiohttp.ClientPayloadError(), httpx.ReadError),
        (httpx.ConnectError, None, httpx.ConnectError),
    ],
)  # fmt: skip
@pytest.mark.anyio
async def test_aiohttp_errors_keep_their_meaning(
    raised: type[httpx.TransportError],
    cause: BaseException | None,
    expected: type[httpx.TransportError],
) -> None:
    """ "Server disconnected" after sending is not a connect timeout: it is remapped."""
    transport = AiohttpErrors(Failing(raised, cause), aiohttp)
    with pytest.raises(httpx.TransportError) as caught:
        await transport.handle_async_request(httpx.Request("POST", BASE))
    assert type(caught.value) is expected
    assert caught.value.__cause__ is cause


@pytest.mark.anyio
async def test_remapped_disconnect_makes_a_write_ambiguous() -> None:
    """Through the client, a disconnect after sending a POST is ambiguous, not transient."""
    inner = Failing(httpx.ConnectTimeout, aiohttp.ServerDisconnectedError())
    async with ServiceNowClient(
        BASE, auth=BasicAuth("u", "p"), transport=AiohttpErrors(inner, aiohttp)
    ) as client:
        with pytest.raises(AmbiguousError):
            await client.create("incident", {"short_description": "x"})
        with pytest.raises(TransientError):
            await client.query("incident")
    assert inner.closed


class Streaming(httpx.AsyncBaseTransport):
    """Answers 200 with a body that streams in, and breaks like httpx-aiohttp's if told to."""

    def __init__(self, *, breaks: bool) -> None:
        self.breaks = breaks

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Return a response with a streamed body."""
        return httpx.Response(200, stream=Chunks(breaks=self.breaks), request=request)


class Chunks(httpx.AsyncByteStream):
    """A body in two chunks; with `breaks`, the connection drops after the first."""

    def __init__(self, *, breaks: bool) -> None:
        self.breaks = breaks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"result": '
        if self.breaks:
            raise httpx.ConnectTimeout("gone") from aiohttp.ServerDisconnectedError()
        yield b"[]}"


@pytest.mark.anyio
async def test_errors_while_reading_the_body_are_remapped() -> None:
    """A disconnect while the body streams in is remapped too."""
    transport = AiohttpErrors(Streaming(breaks=True), aiohttp)
    response = await transport.handle_async_request(httpx.Request("GET", BASE))
    with pytest.raises(httpx.RemoteProtocolError):
        await response.aread()
    await response.aclose()
    healthy = AiohttpErrors(Streaming(breaks=False), aiohttp)
    response = await healthy.handle_async_request(httpx.Request("GET", BASE))
    assert await response.aread() == b'{"result": []}'
    await response.aclose()


@pytest.mark.anyio
async def test_healthy_answers_pass_through_unchanged() -> None:
    """A response that streams in fine is passed on as it came."""
    inner = httpx.MockTransport(lambda request: httpx.Response(200, json={"result": []}))
    async with ServiceNowClient(
        BASE, auth=BasicAuth("u", "p"), transport=AiohttpErrors(inner, aiohttp)
    ) as client:
        assert len(await client.query("incident")) == 0


@pytest.mark.anyio
async def test_aiohttp_transport_is_built_and_accepted() -> None:
    """With the extra installed, aiohttp_transport() gives a transport the client takes."""
    transport = aiohttp_transport(verify=False, max_connections=10)
    assert isinstance(transport, httpx.AsyncBaseTransport)
    async with ServiceNowClient(BASE, auth=BasicAuth("u", "p"), transport=transport) as client:
        assert client.endpoint == BASE


@pytest.mark.parametrize("value", [0, True, 2.5])
def test_aiohttp_transport_checks_max_connections(value: object) -> None:
    """max_connections must be a whole number of at least 1."""
    with pytest.raises(InvalidInput):
        aiohttp_transport(max_connections=value)  # type: ignore[arg-type]


def test_missing_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without httpx-aiohttp, the error says to install callresilience[aiohttp]."""
    monkeypatch.setitem(sys.modules, "httpx_aiohttp", None)
    with pytest.raises(ImportError, match=r"callresilience\[aiohttp\]"):
        aiohttp_transport()


@pytest.mark.anyio
async def test_any_httpx_transport_is_accepted() -> None:
    """transport= takes any httpx.AsyncBaseTransport, such as a MockTransport."""
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"result": []}))
    async with ServiceNowClient(BASE, auth=BasicAuth("u", "p"), transport=transport) as client:
        assert (await client.query("incident")).records == ()
