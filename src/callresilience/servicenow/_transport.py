"""Choosing the HTTP transport: httpx's own (the default) or aiohttp's through httpx-aiohttp.

httpx-aiohttp turns every aiohttp connection error it does not know better into
`httpx.ConnectTimeout`, including "server disconnected" after the request was sent. For us
that difference is the difference between "nothing was written" and "the write may have
committed", so the transport built here is wrapped to map aiohttp's errors by what they mean.
"""

from __future__ import annotations

import importlib
import ssl
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

import httpx

from .._errors import InvalidInput

__all__ = ["aiohttp_transport"]

_EXTRA_HINT = (
    "the aiohttp transport needs the optional extra: pip install 'callresilience[aiohttp]' "
    "(or leave transport= unset to use httpx's own transport)"
)


def _load(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(_EXTRA_HINT, name=name) from exc


def aiohttp_transport(
    *, verify: bool | ssl.SSLContext = True, max_connections: int = 100
) -> httpx.AsyncBaseTransport:
    """Return an httpx transport that sends requests through aiohttp.

    Pass the result as ``ServiceNowClient(..., transport=aiohttp_transport())``. Timeouts
    still come from the client; aiohttp has no write timeout, so that one is not enforced.

    Args:
        verify: TLS verification: True (the default), False, or an `ssl.SSLContext`.
        max_connections: The most connections open at once.

    Raises:
        ImportError: When the ``callresilience[aiohttp]`` extra is not installed.
    """
    if isinstance(max_connections, bool) or not isinstance(max_connections, int):
        raise InvalidInput("max_connections: expected a whole number", field="max_connections")
    if max_connections < 1:
        raise InvalidInput("max_connections: must be 1 or more", field="max_connections")
    aiohttp = _load("aiohttp")
    httpx_aiohttp = _load("httpx_aiohttp")
    inner = httpx_aiohttp.AiohttpTransport(
        verify=verify, limits=httpx.Limits(max_connections=max_connections)
    )
    return AiohttpErrors(inner, aiohttp)


def _remap(exc: httpx.TransportError, aiohttp: Any) -> httpx.TransportError:
    cause = exc.__cause__
    if cause is None or isinstance(cause, aiohttp.ClientConnectorError):
        return exc
    new: type[httpx.TransportError] | None = None
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        new = httpx.ConnectTimeout
    elif isinstance(cause, aiohttp.ServerTimeoutError):
        new = httpx.ReadTimeout
    elif isinstance(cause, aiohttp.ServerDisconnectedError | aiohttp.ClientConnectionResetError):
        new = httpx.RemoteProtocolError
    elif isinstance(cause, aiohttp.ClientConnectionError):
        new = httpx.ReadError
    if new is None or type(exc) is new:
        return exc
    try:
        request: httpx.Request | None = exc.request
    except RuntimeError:  # raised by httpx when the error carries no request
        request = None
    return new(str(exc), request=request)


class _RemappedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, aiohttp: Any) -> None:
        self._inner = inner
        self._aiohttp = aiohttp

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except httpx.TransportError as exc:
            raise _remap(exc, self._aiohttp) from exc.__cause__

    async def aclose(self) -> None:
        await self._inner.aclose()


class AiohttpErrors(httpx.AsyncBaseTransport):
    """Wraps httpx-aiohttp's transport so that aiohttp errors keep their meaning.

    Args:
        inner: The transport to wrap.
        aiohttp: The `aiohttp` module, whose exception classes are matched.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, aiohttp: Any) -> None:
        self._inner = inner
        self._aiohttp = aiohttp

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send the request through the wrapped transport, remapping its errors."""
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TransportError as exc:
            raise _remap(exc, self._aiohttp) from exc.__cause__
        stream = response.stream
        if isinstance(stream, httpx.AsyncByteStream):
            response.stream = _RemappedStream(stream, self._aiohttp)
        return response

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._inner.aclose()
