"""Nonces bound to the replica that issued them: single use across replicas, with no
apiserver write, and a replay or a foreign nonce refused before any verification."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime

import aiohttp
import pytest

from enclave_runtime.kbs_protocol import SESSION_COOKIE
from kubetee.attestation.verified import VerifiedQuote
from kubetee.attestation_service.app import EvidenceVerifier, create_app
from kubetee.attestation_service.errors import NonceOfAnotherReplicaError, NonceReplayedError
from kubetee.attestation_service.replay import MemoryNonceLedger
from kubetee.attestation_service.sessions import SessionSigner
from kubetee.attestation_service.tls import server_context
from tests.kbs_serving import port_of, serving

from .conftest import Stack
from .test_attestation_flow import Session, _post_attest

MASTER_KEY = b"k" * 32


def _signer(replica: str | None) -> SessionSigner:
    return SessionSigner(MASTER_KEY, nonce_ttl_seconds=60, token_ttl_seconds=300, replica=replica)


@dataclass
class CountingVerifier:
    """The service's verifier, counting the quotes it was asked to verify."""

    inner: EvidenceVerifier
    calls: int = 0

    async def verify(self, quote: bytes, now: datetime) -> VerifiedQuote:
        self.calls += 1
        return await self.inner.verify(quote, now)


@pytest.fixture
async def replicas(stack: Stack) -> AsyncIterator[tuple[Stack, Stack]]:
    """The stack's service as replica "a", and a replica "b" of the same service (same
    session key, cluster and verifier) with its own process memory, on its own port."""
    a = stack.service
    genuine = a.verifier
    a.sessions = _signer("a")
    a.verifier = CountingVerifier(genuine)
    b = replace(
        a, sessions=_signer("b"), ledger=MemoryNonceLedger(), verifier=CountingVerifier(genuine)
    )
    async with serving(create_app(b), server_context(stack.tls.certificate, stack.tls.key)) as kbs:
        yield stack, replace(stack, base_url=f"https://127.0.0.1:{port_of(kbs)}", service=b)


def _calls(stack: Stack) -> int:
    verifier = stack.service.verifier
    assert isinstance(verifier, CountingVerifier)
    return verifier.calls


async def test_a_replayed_nonce_is_refused_before_its_quote_is_verified(
    replicas: tuple[Stack, Stack],
) -> None:
    a, _ = replicas
    pod = a.add_pod("payments-1")
    async with Session(a, pod) as session:
        challenge_cookie = session.cookie()
        data = session.runtime_data()
        attestation = session.attestation(data, await session.quote_for(data))
        await session.kbs.attest(attestation)
    assert _calls(a) == 1

    status, problem = await _post_attest(a, challenge_cookie, attestation)

    assert (status, problem["reason"]) == (401, "NonceReplayed")
    assert _calls(a) == 1  # refused as cheaply as it was sent
    assert [o.reason for o in a.cluster.outcomes] == ["Attested"]


async def test_a_nonce_from_another_replica_is_refused_there(
    replicas: tuple[Stack, Stack],
) -> None:
    a, b = replicas
    pod = a.add_pod("payments-1")
    # Used at replica a, then replayed at b, which cannot know it was used.
    async with Session(a, pod) as session:
        cookie = session.cookie()
        data = session.runtime_data()
        attestation = session.attestation(data, await session.quote_for(data))
        await session.kbs.attest(attestation)

    replayed = await _post_attest(b, cookie, attestation)

    # A fresh nonce of a, taken to b before a saw it, is refused at b too.
    async with Session(a, pod) as session:
        data = session.runtime_data()
        unused = session.attestation(data, await session.quote_for(data))
        fresh = await _post_attest(b, session.cookie(), unused)
        # ... and stays usable where it was issued.
        await session.kbs.attest(unused)

    for status, problem in (replayed, fresh):
        assert (status, problem["reason"]) == (401, "NonceReplayed")
        assert "another attestation service replica" in problem["detail"]
    assert _calls(b) == 0  # b verified nothing
    assert [o.reason for o in a.cluster.outcomes] == ["Attested", "Attested"]


async def test_each_replica_attests_with_its_own_nonces(replicas: tuple[Stack, Stack]) -> None:
    _, b = replicas
    pod = b.add_pod("payments-1")
    async with Session(b, pod) as session:
        data = session.runtime_data()
        token = await session.kbs.attest(session.attestation(data, await session.quote_for(data)))
    assert token
    assert _calls(b) == 1


def test_a_bound_signer_refuses_challenges_of_others_and_unbound_ones() -> None:
    a, b, unbound = _signer("a"), _signer("b"), _signer(None)
    _, from_a = a.new_challenge(1_800_000_000)
    _, from_unbound = unbound.new_challenge(1_800_000_000)

    a.check_issued_here(a.read_challenge(from_a))
    unbound.check_issued_here(unbound.read_challenge(from_a))  # not bound: the ledger decides
    for signer, cookie in ((b, from_a), (a, from_unbound)):
        with pytest.raises(NonceOfAnotherReplicaError) as refused:
            signer.check_issued_here(signer.read_challenge(cookie))
        assert isinstance(refused.value, NonceReplayedError)
        assert refused.value.code == "NONCE_OF_ANOTHER_REPLICA"


async def test_the_memory_ledger_knows_used_nonces_without_io() -> None:
    ledger = MemoryNonceLedger()
    assert not ledger.known_used("n1")
    await ledger.record("n1", 1_800_000_060, None)
    assert ledger.known_used("n1")
    assert not ledger.known_used("n2")
    with pytest.raises(NonceReplayedError):
        await ledger.record("n1", 1_800_000_060, "token")


async def test_resources_with_another_replicas_auth_cookie_say_where_to_go(
    replicas: tuple[Stack, Stack],
) -> None:
    a, b = replicas
    pod = a.add_pod("payments-1")
    async with Session(a, pod) as session:
        auth_cookie = session.cookie()
        data = session.runtime_data()
        await session.kbs.attest(session.attestation(data, await session.quote_for(data)))

    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http,
        http.get(
            f"{b.base_url}/kbs/v0/resource/{pod.namespace}/payments/db",
            headers={"Cookie": f"{SESSION_COOKIE}={auth_cookie}"},
            ssl=b.client_context(),
        ) as response,
    ):
        status, problem = response.status, await response.json()

    assert (status, problem["reason"]) == (401, "SessionInvalid")
    assert "another attestation service replica" in problem["detail"]
