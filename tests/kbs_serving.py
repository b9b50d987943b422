"""The attestation service's routes served as production serves them (its listener and
HTTP connections), on a free loopback port, for tests; and a service for requests
that are answered before any quote is verified."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator

from kubetee.attestation_service.app import KbsService
from kubetee.attestation_service.connections import ConnectionLimits, Serving, start
from kubetee.attestation_service.http_connection import Application
from kubetee.attestation_service.memory_backend import InMemoryCluster
from kubetee.attestation_service.replay import MemoryNonceLedger
from kubetee.attestation_service.sessions import SessionSigner


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


class _NoVerifier:
    async def verify(self, quote: bytes, now: object) -> object:
        raise AssertionError("these requests are answered before any verification")


def unverifying_service() -> KbsService:
    """A service with an empty in-memory cluster whose verifier fails the test if any
    request reaches it."""
    cluster = InMemoryCluster()
    return KbsService(
        sessions=SessionSigner(b"k" * 32, nonce_ttl_seconds=60, token_ttl_seconds=300),
        ledger=MemoryNonceLedger(),
        verifier=_NoVerifier(),  # type: ignore[arg-type]
        workloads=cluster,
        reporter=cluster,
    )
