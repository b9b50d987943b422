"""The attestation service probe: two failures make it unavailable, one answer undoes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from kubetee.controller.service_health import ServiceHealth
from kubetee.reconcile.service_probe import AttestationServiceProbe

START = datetime(2026, 1, 1, tzinfo=UTC)


def _probe() -> tuple[AttestationServiceProbe, list[ServiceHealth], list[datetime]]:
    changes: list[ServiceHealth] = []
    now = [START]
    probe = AttestationServiceProbe(
        "https://kbs.test:8443/", None, 1.0, changes.append, clock=lambda: now[0]
    )
    return probe, changes, now


def test_one_failure_is_not_an_outage_two_are() -> None:
    probe, changes, now = _probe()
    probe.record("Connection refused")
    assert probe.health.reachable
    assert changes == []
    now[0] = START + timedelta(seconds=1)
    probe.record("Connection refused")
    assert not probe.health.reachable
    assert len(changes) == 1
    assert "https://kbs.test:8443 cannot attest since 2026-01-01T00:00:00Z" in (
        probe.health.message
    )
    probe.record("Connection refused")
    assert len(changes) == 1  # told once


def test_an_answer_makes_it_reachable_again_from_then() -> None:
    probe, changes, now = _probe()
    probe.record("timeout")
    probe.record("timeout")
    now[0] = START + timedelta(minutes=5)
    probe.record(None)
    assert probe.health.reachable
    assert probe.reachable_since == now[0]
    assert [c.reachable for c in changes] == [False, True]


def test_without_a_url_the_service_is_never_reachable() -> None:
    probe = AttestationServiceProbe(None, None, 1.0, lambda _: None)
    assert not probe.health.reachable
    assert "KUBETEE_ATTESTATION_URL" in probe.health.message


async def test_every_replica_is_asked_and_one_ready_replica_is_enough() -> None:
    """/readyz of each URL; the service is out only when no replica could attest."""

    async def ready(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def not_ready(_request: web.Request) -> web.Response:
        return web.json_response({"detail": "etcd is away"}, status=503)

    servers = []
    for handler in (ready, not_ready):
        app = web.Application()
        app.router.add_get("/readyz", handler)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
    up, down = (f"http://127.0.0.1:{s.port}" for s in servers)
    try:
        probe = AttestationServiceProbe(f"{down},{up}", None, 1.0, lambda _: None)
        async with aiohttp.ClientSession() as session:
            assert await probe._probe(session) is None
            only_down = AttestationServiceProbe(down, None, 1.0, lambda _: None)
            failure = await only_down._probe(session)
    finally:
        for server in servers:
            await server.close()
    assert failure == "/readyz answered HTTP 503: etcd is away"
