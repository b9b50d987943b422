"""Bounded HTTPS connections: an idle or slow client cannot hold the service's memory.

Each TLS connection costs about 280 KiB (TLS and HTTP buffers). So the listener

- accepts at most ``max_connections`` at once (counted from the TCP accept, TLS
  handshakes included); beyond that a connection is closed at once;
- gives a TLS handshake ``handshake_timeout`` seconds;
- closes a connection that sends no complete request head within ``keepalive_timeout``
  seconds of opening, or stays idle that long between requests (aiohttp's keep-alive
  timer runs from the connection's start and is not extended by partial data).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import weakref
from dataclasses import dataclass

from aiohttp import web

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_connections: int = 256
    keepalive_timeout: float = 15.0
    handshake_timeout: float = 10.0


class _Counted(asyncio.Protocol):
    """Forwards to aiohttp's request handler and counts the connection while it lives."""

    def __init__(self, inner: asyncio.Protocol, live: weakref.WeakSet[_Counted]) -> None:
        self._inner = inner
        self._live = live
        self.accepted = time.monotonic()
        self.made = False
        live.add(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made = True
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._live.discard(self)
        self._inner.connection_lost(exc)


class _Refused(asyncio.Protocol):
    """Closes a connection over the limit as soon as it is accepted."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class BoundedConnections:
    """A protocol factory around aiohttp's low-level server that caps live connections.

    A connection whose TLS handshake fails is never handed to the application (asyncio
    does not report its loss): it stops counting once its handshake time has run out,
    and is forgotten when collected (hence the weak set).
    """

    def __init__(self, server: web.Server, max_connections: int, handshake_timeout: float) -> None:
        self._server = server
        self._max = max_connections
        self._handshake_timeout = handshake_timeout
        self._live: weakref.WeakSet[_Counted] = weakref.WeakSet()
        self.refused = 0

    @property
    def live(self) -> int:
        """Connections open or still within their TLS handshake time."""
        deadline = time.monotonic() - self._handshake_timeout
        stale = [c for c in self._live if not c.made and c.accepted <= deadline]
        for connection in stale:
            self._live.discard(connection)
        return len(self._live)

    def __call__(self) -> asyncio.Protocol:
        if self.live >= self._max:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warning(
                    "refusing connections: %d open, the limit (--max-connections); %d refused",
                    self.live,
                    self.refused,
                )
            return _Refused()
        return _Counted(self._server(), self._live)


async def start(
    app: web.Application,
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext,
    limits: ConnectionLimits,
    reuse_port: bool = False,
) -> tuple[web.AppRunner, asyncio.Server, BoundedConnections]:
    """Serve ``app`` over TLS within ``limits`` (``reuse_port``: several processes share
    the port); the caller cleans up the runner."""
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=limits.keepalive_timeout)
    await runner.setup()
    server = runner.server
    if server is None:  # pragma: no cover - setup() always creates it
        raise RuntimeError("the aiohttp runner has no server")
    factory = BoundedConnections(server, limits.max_connections, limits.handshake_timeout)
    listener = await asyncio.get_running_loop().create_server(
        factory,
        host,
        port,
        ssl=ssl_context,
        ssl_handshake_timeout=limits.handshake_timeout,
        backlog=128,
        reuse_port=reuse_port or None,
    )
    return runner, listener, factory
