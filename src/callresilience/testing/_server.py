"""Serving a FakeServiceNow over real HTTP on 127.0.0.1, with uvicorn.

The ASGI app is a thin adapter over the same core as the in-process transport. Faults that
live below HTTP need the socket, which ASGI does not expose, so the server runs uvicorn's h11
protocol with one addition: it remembers each connection's transport, by client address, so
the app can close a connection without answering. Refusing connections closes the listening
socket for as long as an unconditional `RefuseConnections` is active, and opens it again on the
same port afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from ._fake import FakeServiceNow, _Request

if TYPE_CHECKING:
    import uvicorn

__all__ = ["LoopbackServer"]

_HOST = "127.0.0.1"  # never anything else: the fake must not be reachable from outside
_POLL = 0.02  # how often the listener follows the fault windows, in wall-clock seconds
_TURNS = 10  # event-loop turns to wait for idle connections to close

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Peer = tuple[str, int]


def _missing_uvicorn() -> RuntimeError:
    return RuntimeError(
        "serving the FakeServiceNow over HTTP needs uvicorn; "
        "install it with: pip install 'callresilience[sim]'"
    )


class _App:
    """The ASGI face of a FakeServiceNow."""

    def __init__(
        self,
        fake: FakeServiceNow,
        transports: dict[Peer, asyncio.Transport],
        closing: asyncio.Event,
    ) -> None:
        self._fake = fake
        self._transports = transports
        self._closing = closing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host") or "{}:{}".format(*scope["server"])
        request = _Request(
            method=scope["method"],
            path=scope["path"],
            query=scope["query_string"].decode("latin-1"),
            headers=headers,
            body=body,
            base_url=f"{scope['scheme']}://{host}",
        )
        exchange = asyncio.ensure_future(
            self._fake._exchange(
                request,
                read_timeout=None,
                interrupt=lambda: _disconnected(receive),
                spawn=None,
            )
        )
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({exchange, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (exchange, closing):
                task.cancel()
            await asyncio.gather(exchange, closing, return_exceptions=True)
        response = None
        if exchange.done() and not exchange.cancelled():
            response = exchange.result().response
        if response is None:
            await self._drop(scope, receive)
            return
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers
                ],
            }
        )
        await send({"type": "http.response.body", "body": response.body})

    async def _drop(self, scope: Scope, receive: Receive) -> None:
        """Close the connection without an answer, and wait until the server has noticed."""
        client = scope.get("client")
        transport = self._transports.get((client[0], client[1])) if client else None
        if transport is not None:  # else the client has gone already
            transport.abort()
        await _disconnected(receive)


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _bind(port: int) -> socket.socket:
    # With the protocol named, asyncio sets TCP_NODELAY on accepted connections; without it,
    # the end of every answer on a kept-alive connection waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((_HOST, port))
    except OSError:
        sock.close()
        raise
    return sock


def _tracking_protocol(transports: dict[Peer, asyncio.Transport]) -> type[asyncio.Protocol]:
    """Return uvicorn's h11 protocol, extended to remember each connection's transport."""
    from uvicorn.protocols.http.h11_impl import H11Protocol  # noqa: PLC0415 (optional)

    class _Tracking(H11Protocol):
        _peer: Peer | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            peer = transport.get_extra_info("peername")
            if peer:
                self._peer = (peer[0], peer[1])
                transports[self._peer] = transport

        def connection_lost(self, exc: Exception | None) -> None:
            if self._peer is not None:
                transports.pop(self._peer, None)
            super().connection_lost(exc)

    return _Tracking


class LoopbackServer:
    """One FakeServiceNow served on 127.0.0.1 by uvicorn; use `FakeServiceNow.serve()`.

    Args:
        fake: The instance to serve.
        port: The TCP port; 0 picks a free one.
    """

    def __init__(self, fake: FakeServiceNow, *, port: int = 0) -> None:
        self._fake = fake
        self._port = port
        self._transports: dict[Peer, asyncio.Transport] = {}
        self._closing = asyncio.Event()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._server: uvicorn.Server | None = None
        self._listening = False
        self._closed: list[asyncio.base_events.Server] = []
        self._watcher: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return f"http://{_HOST}:{self._port}"

    @property
    def listening(self) -> bool:
        """Whether the listening socket is open (False while refusing connections)."""
        return self._listening

    async def start(self) -> None:
        """Bind, start serving and follow the fault schedule.

        Raises:
            RuntimeError: If uvicorn is not installed.
            OSError: If the port cannot be bound.
        """
        try:
            import uvicorn  # noqa: PLC0415 (optional dependency)
        except ImportError as exc:  # pragma: no cover (uvicorn is in the dev extra)
            raise _missing_uvicorn() from exc
        sock = _bind(self._port)
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            _App(self._fake, self._transports, self._closing),
            host=_HOST,
            port=self._port,
            http=_tracking_protocol(self._transports),
            ws="none",
            lifespan="off",
            interface="asgi3",
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=5,
        )
        config.load()
        self._server = uvicorn.Server(config)
        self._server.lifespan = config.lifespan_class(config)
        await self._server.startup(sockets=[sock])
        self._listening = True
        self._unsubscribe = self._fake.faults.subscribe(self._wake.set)
        self._fake._servers.add(self)
        await self.reconcile()
        self._watcher = asyncio.ensure_future(self._watch())

    async def stop(self) -> None:
        """Close black holes and connections, stop listening and wait until all is closed."""
        self._fake._servers.discard(self)
        self._closing.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        if self._server is not None:
            await self._server.shutdown()
        for server in self._closed:
            await server.wait_closed()

    async def reconcile(self) -> None:
        """Open or close the listening socket to match the fault schedule now."""
        if self._server is None:
            raise RuntimeError("the server has not been started")
        async with self._lock:
            refusing = self._fake.faults.refusing_connections(self._fake.clock.now())
            if refusing and self._listening:
                for server in self._server.servers:
                    server.close()
                    self._closed.append(server)
                connections = self._server.server_state.connections
                closing = set(connections)
                for connection in closing:
                    connection.shutdown()
                self._listening = False
                # Idle keep-alive connections close on the next loop turns; wait for that so a
                # pooled client sees them gone and reconnects (and is refused). Connections
                # that are still answering a request stay until their answer is sent.
                for _ in range(_TURNS):
                    if not closing & connections:
                        break
                    await asyncio.sleep(0)
            elif not refusing and not self._listening:
                await self._server.startup(sockets=[_bind(self._port)])
                self._listening = True

    async def _watch(self) -> None:
        while True:
            self._wake.clear()
            await self.reconcile()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _POLL)
