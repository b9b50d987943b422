"""Bounded HTTPS connections: an idle or slow client cannot hold the service's memory.

An idle TLS connection costs about 50 KiB (TLS state and buffers), one mid-request its
body too (up to ``MAX_BODY_BYTES``). So the listener

- accepts at most ``max_connections`` at once (counted from the TCP accept, TLS
  handshakes included); beyond that a connection is closed at once;
- gives a TLS handshake ``handshake_timeout`` seconds;
- closes a connection that sends no whole request within ``keepalive_timeout`` seconds
  of opening, or stays idle that long between requests (the timer is not extended by
  partial data);
- on shutdown stops accepting, closes idle connections, lets each busy one finish its
  answer, and closes what is left after a grace time (:meth:`Serving.close`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import weakref
from dataclasses import dataclass

from kubetee.attestation_service.http_connection import Application, HttpConnection

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_connections: int = 256
    keepalive_timeout: float = 15.0
    handshake_timeout: float = 10.0


class _Counted(asyncio.Protocol):
    """Forwards to the HTTP connection and counts it while it lives."""

    def __init__(self, inner: HttpConnection, live: weakref.WeakSet[_Counted]) -> None:
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
    """A factory of HTTP connections to ``app`` that caps live connections.

    A connection whose TLS handshake fails is never handed to the application (asyncio
    does not report its loss): it stops counting once its handshake time has run out,
    and is forgotten when collected (hence the weak set).
    """

    def __init__(self, app: Application, limits: ConnectionLimits) -> None:
        self._app = app
        self._max = limits.max_connections
        self._handshake_timeout = limits.handshake_timeout
        self._keepalive_timeout = limits.keepalive_timeout
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
        return _Counted(
            HttpConnection(self._app, keepalive_timeout=self._keepalive_timeout), self._live
        )

    def connections(self) -> list[HttpConnection]:
        """The connections open now."""
        return [counted._inner for counted in list(self._live) if counted.made]


@dataclass
class Serving:
    """A listening service: its listener and connections, closed together by ``close``."""

    listener: asyncio.Server
    connections: BoundedConnections

    async def close(self, grace_seconds: float = 10.0) -> None:
        """Stop accepting; close idle connections at once and busy ones after their
        answer; after ``grace_seconds`` close whatever is left."""
        self.listener.close()
        open_now = self.connections.connections()
        for connection in open_now:
            connection.close_when_idle()
        if open_now:
            await asyncio.wait([c.closed for c in open_now], timeout=grace_seconds)
        for connection in self.connections.connections():
            connection.abort()
        await self.listener.wait_closed()


async def start(
    app: Application,
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    limits: ConnectionLimits,
    reuse_port: bool = False,
) -> Serving:
    """Serve ``app`` over TLS (``ssl_context`` None: plain TCP, for tests) within
    ``limits`` (``reuse_port``: several processes share the port)."""
    factory = BoundedConnections(app, limits)
    listener = await asyncio.get_running_loop().create_server(
        factory,
        host,
        port,
        ssl=ssl_context,
        ssl_handshake_timeout=limits.handshake_timeout if ssl_context is not None else None,
        backlog=128,
        reuse_port=reuse_port or None,
    )
    return Serving(listener, factory)
