"""The runtime keeps one connection to the service for its life: re-attestation reuses it
while the service's keep-alive timeout allows, reconnects once the service has closed it,
and a round whose connection closed under it starts again; nonces stay single-use on
the kept connection and across connections."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from enclave_runtime.kbs_protocol import (
    SESSION_COOKIE,
    KbsConnectionLostError,
    KbsRefusedError,
    KbsUnavailableError,
)
from enclave_runtime.kbs_protocol.client import KbsClient
from enclave_runtime.runtime.attestation import attest_once, kbs_client
from kubetee.attestation_service.app import Handler, create_app
from kubetee.attestation_service.connections import ConnectionLimits, start
from kubetee.attestation_service.http_messages import HttpRequest, HttpResponse
from kubetee.attestation_service.tls import server_context

from .conftest import API_KEY_VALUE, SECRET_VALUE, Stack, identity
from .test_attestation_flow import Session, _post_attest


@dataclass
class Served:
    """The stack's service behind the production listener (:func:`connections.start`),
    recording the client connection (its peer address) of every request."""

    stack: Stack
    peers: list[tuple[str, int]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    # Steps whose next requests (this many) have their connection closed unanswered.
    drops: Counter[str] = field(default_factory=Counter)
    # Steps whose next requests (this many) are answered 503, the connection kept.
    fails: Counter[str] = field(default_factory=Counter)

    @property
    def connections(self) -> int:
        return len(set(self.peers))


async def _serve(stack: Stack, keepalive_timeout: float) -> AsyncIterator[Served]:
    served = Served(stack)

    async def record(request: HttpRequest, handler: Handler) -> HttpResponse:
        assert request.transport is not None
        served.peers.append(request.transport.get_extra_info("peername"))
        served.requests.append(request.path.rsplit("/", 1)[-1])
        step = request.path.removeprefix("/kbs/v0/").split("/", 1)[0]
        if served.drops[step] > 0:
            served.drops[step] -= 1
            request.transport.close()  # as when the idle timer fires with the request in flight
            return HttpResponse(503)
        if served.fails[step] > 0:
            served.fails[step] -= 1
            return HttpResponse(503)
        return await handler(request)

    app = create_app(stack.service)
    app.middlewares.insert(0, record)
    serving = await start(
        app,
        host="127.0.0.1",
        port=0,
        ssl_context=server_context(stack.tls.certificate, stack.tls.key),
        limits=ConnectionLimits(keepalive_timeout=keepalive_timeout),
    )
    port = serving.listener.sockets[0].getsockname()[1]
    served.stack = Stack(
        f"https://127.0.0.1:{port}",
        stack.tls,
        stack.cluster,
        stack.clock,
        stack.sockets,
        stack.workdir,
        stack.service,
    )
    served.stack.set_policy()
    yield served
    await serving.close(grace_seconds=1.0)


@pytest.fixture
async def kept(stack: Stack) -> AsyncIterator[Served]:
    """The service keeping idle connections 30 s (longer than any test's rounds)."""
    async for served in _serve(stack, keepalive_timeout=30):
        yield served


@pytest.fixture
async def brief(stack: Stack) -> AsyncIterator[Served]:
    """The service closing connections idle for 0.2 s."""
    async for served in _serve(stack, keepalive_timeout=0.2):
        yield served


async def _rounds(served: Served, count: int, *, pause: float = 0.0) -> list[dict[str, bytes]]:
    stack = served.stack
    pod = stack.add_pod("payments-1")
    settings = stack.runtime_settings(pod)
    outcomes = []
    async with kbs_client(settings, stack.client_context(), stack.base_url) as kbs:
        for _ in range(count):
            outcome = await attest_once(
                settings, identity(settings), stack.quoting(), stack.client_context(), kbs=kbs
            )
            outcomes.append(outcome.secrets)
            await asyncio.sleep(pause)
    return outcomes


async def test_re_attestation_reuses_the_kept_connection(kept: Served) -> None:
    outcomes = await _rounds(kept, 3)

    assert outcomes == [{"db": SECRET_VALUE, "api": API_KEY_VALUE}] * 3
    # Three rounds of auth, attest and two resources: twelve requests, one connection.
    assert len(kept.requests) == 12
    assert kept.connections == 1
    assert [o.reason for o in kept.stack.cluster.outcomes] == ["Attested"] * 3


async def test_a_connection_the_service_closed_as_idle_is_replaced(brief: Served) -> None:
    outcomes = await _rounds(brief, 2, pause=0.6)

    assert outcomes == [{"db": SECRET_VALUE, "api": API_KEY_VALUE}] * 2
    assert brief.connections == 2  # the first closed by the service's keep-alive timeout


async def test_auth_is_sent_again_when_its_connection_closed_under_it(kept: Served) -> None:
    kept.drops["auth"] = 1

    outcomes = await _rounds(kept, 1)

    assert outcomes == [{"db": SECRET_VALUE, "api": API_KEY_VALUE}]
    assert kept.requests[:2] == ["auth", "auth"]
    assert kept.connections == 2


async def test_a_round_whose_connection_closed_mid_round_starts_again(kept: Served) -> None:
    kept.drops["attest"] = 1

    outcomes = await _rounds(kept, 1)

    # The lost round's nonce went with its connection: a new round, a new nonce.
    assert outcomes == [{"db": SECRET_VALUE, "api": API_KEY_VALUE}]
    assert kept.requests[:4] == ["auth", "attest", "auth", "attest"]
    assert [o.reason for o in kept.stack.cluster.outcomes] == ["Attested"]


async def test_a_connection_lost_twice_in_one_round_is_reported(kept: Served) -> None:
    stack = kept.stack
    pod = stack.add_pod("payments-1")
    settings = stack.runtime_settings(pod)
    kept.drops["attest"] = 2

    async with kbs_client(settings, stack.client_context(), stack.base_url) as kbs:
        with pytest.raises(KbsConnectionLostError, match="attest: the connection"):
            await attest_once(
                settings, identity(settings), stack.quoting(), stack.client_context(), kbs=kbs
            )

    # One new round, not a loop: the supervisor decides what comes next.
    assert kept.requests == ["auth", "attest", "auth", "attest"]
    assert stack.cluster.outcomes == []


async def test_refusals_and_failures_leave_the_kept_connection_in_use(kept: Served) -> None:
    stack = kept.stack
    settings = stack.runtime_settings(stack.add_pod("payments-1"))
    kept.fails["auth"] = 1

    async with kbs_client(settings, stack.client_context(), stack.base_url) as kbs:
        with pytest.raises(KbsUnavailableError, match="auth: attestation service answered 503"):
            await kbs.auth()
        await kbs.auth()
        # Not attested yet: refused, with the problem's reason read from the body.
        with pytest.raises(KbsRefusedError) as refused:
            await kbs.resource(settings.pod_namespace, settings.enclave_container, "db")
        assert refused.value.status == 401
        outcome = await attest_once(
            settings, identity(settings), stack.quoting(), stack.client_context(), kbs=kbs
        )

    assert outcome.secrets == {"db": SECRET_VALUE, "api": API_KEY_VALUE}
    # Each answer released the connection for the next request, whatever its status.
    assert kept.requests[:3] == ["auth", "auth", "db"]
    assert kept.connections == 1


async def test_a_new_round_forgets_the_last_rounds_session_cookie(kept: Served) -> None:
    stack = kept.stack
    pod = stack.add_pod("payments-1")
    async with Session(stack, pod) as session:
        first = session.cookie()
        await session.kbs.auth()
        assert session.cookie() != first


async def test_a_nonce_used_on_a_kept_connection_is_refused_there_and_elsewhere(
    kept: Served,
) -> None:
    stack = kept.stack
    pod = stack.add_pod("payments-1")
    async with Session(stack, pod) as session:
        cookie = session.cookie()
        data = session.runtime_data()
        attestation = session.attestation(data, await session.quote_for(data))
        await session.kbs.attest(attestation)
        # Replayed on the same kept connection, after a later round began on it ...
        await session.kbs.auth()
        # Only the replayed cookie goes: the client's own is a header it adds, not a jar's.
        answer = await session.kbs.connection.request(  # the client's own (kept) connection
            "POST",
            "/kbs/v0/attest",
            f"Content-Type: application/json\r\nCookie: {SESSION_COOKIE}={cookie}\r\n",
            json.dumps(attestation.to_wire()).encode(),
        )
        same = answer.status, json.loads(answer.body)
        assert kept.connections == 1
    # ... and on a new connection.
    other = await _post_attest(stack, cookie, attestation)

    for status, problem in (same, other):
        assert (status, problem["reason"]) == (401, "NonceReplayed")
    assert kept.connections == 2
    assert [o.reason for o in stack.cluster.outcomes] == ["Attested"]


async def test_the_client_keeps_its_connection_past_the_re_attestation_interval(
    stack: Stack,
) -> None:
    settings = stack.runtime_settings(stack.add_pod("payments-1"))
    async with kbs_client(settings, stack.client_context(), stack.base_url) as kbs:
        # The service's timeout decides when a kept connection closes, not the runtime.
        assert kbs.connection._keepalive > settings.reattest_interval_seconds
        assert isinstance(kbs, KbsClient)
