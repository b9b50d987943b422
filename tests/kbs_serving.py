"""The attestation service's routes served as production serves them (its listener and
HTTP connections), on a free loopback port, for tests."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator

from kubetee.attestation_service.connections import ConnectionLimits, Serving, start
from kubetee.attestation_service.http_connection import Application


@contextlib.asynccontextmanager
async def serving(
    app: Application,
    ssl_context: ssl.SSLContext | None = None,
    limits: ConnectionLimits | None = None,
) -> AsyncIterator[Serving]:
    """``app`` listening on 127.0.0.1 (``port_of`` gives the port) until the block ends."""
    served = await start(
        app, host="127.0.0.1", port=0, ssl_context=ssl_context, limits=limits or ConnectionLimits()
    )
    try:
        yield served
    finally:
        await served.close(grace_seconds=1.0)


def port_of(served: Serving) -> int:
    port: int = served.listener.sockets[0].getsockname()[1]
    return port
