"""Stateless KBS sessions: everything a replica needs travels in signed cookies.

``/auth`` hands out a fresh nonce and a *challenge* cookie: the nonce and its expiry
under an HMAC-SHA256 (:class:`.session_tokens.ChallengeCookie`: only this service reads
it, so it is no JWT; nothing the client claims: who attests is learnt from the signed
evidence). ``/attest`` accepts evidence only with a challenge cookie that any replica
can check with the shared key (HMAC), that has not expired, and whose nonce the
runtime data repeats; single use is enforced by the replay ledger (:mod:`.replay`),
which also keeps the outcome. A signer made with ``replica`` (an id drawn afresh each
time a service process starts) writes it into every challenge and accepts only its
own: a nonce is then single-use across all replicas with a ledger in this process's
memory, since no other process takes it (and a restarted one has another id). The
client keeps the exchange on one connection, hence one process. A successful
``/attest`` answers with an *attested* token (an HS256 JWT, which a stock client
reads) binding the TEE public key, the pod, the
workload and the policy it was judged by; ``/resource`` accepts it as a cookie or
bearer token, or the challenge cookie itself, whose nonce the ledger maps to that token
(the protocol keeps the ``/auth`` cookie valid for resources).

The two token kinds use separate keys derived from the master key (HKDF), so one
can never be passed off as the other.
"""

from __future__ import annotations

import base64
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import TypeVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import ValidationError

from enclave_runtime.kbs_protocol import TeePubKey
from kubetee.attestation_service.errors import (
    AttestationExpiredError,
    NonceExpiredError,
    NonceOfAnotherReplicaError,
    SessionMissingError,
)
from kubetee.attestation_service.session_tokens import (
    ChallengeCookie,
    Hs256Jwt,
    TokenInvalidError,
)

NONCE_BYTES = 32
MIN_MASTER_KEY_BYTES = 32
ISSUER = "kubetee-attestation-service"
_CHALLENGE = "kbs-challenge"
_ATTESTED = "kbs-attested"
# Tokens whose sessions are kept (each is read once, right after /attest, by a resource
# request on the same connection): a few hundred KiB at most.
_ISSUED_KEPT = 512
# Challenge cookies kept likewise (each is read back once, by /attest on the same
# connection, within the nonce's life): about 300 bytes each.
_CHALLENGES_KEPT = 1024

_K = TypeVar("_K")
_V = TypeVar("_V")


@dataclass(frozen=True, slots=True)
class PodRef:
    """The pod whose enclave runtime is attesting, as its evidence's init-data names it."""

    namespace: str
    name: str
    uid: str

    def to_claim(self) -> dict[str, str]:
        return {"namespace": self.namespace, "name": self.name, "uid": self.uid}

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class ChallengeSession:
    nonce: str
    expires_at: int
    # The service process that issued the nonce, when nonces are bound to it.
    replica: str | None = None


@dataclass(frozen=True, slots=True)
class AttestedSession:
    """What a successful attestation established, for the resource requests after it."""

    pod: PodRef
    enclave_container: str
    policy_hash: str
    tee_pubkey: TeePubKey
    expires_at: int


class SessionSigner:
    """Signs and checks session cookies with keys derived from the replicas' shared key."""

    def __init__(
        self,
        master_key: bytes,
        *,
        nonce_ttl_seconds: int,
        token_ttl_seconds: int,
        replica: str | None = None,
    ):
        if len(master_key) < MIN_MASTER_KEY_BYTES:
            raise ValueError(
                f"the session key must have at least {MIN_MASTER_KEY_BYTES} bytes, "
                f"got {len(master_key)}"
            )
        ChallengeCookie.check_replica(replica)
        self._challenges = ChallengeCookie(_derive(master_key, _CHALLENGE))
        self._tokens = Hs256Jwt(_derive(master_key, _ATTESTED))
        self.nonce_ttl_seconds = nonce_ttl_seconds
        self.token_ttl_seconds = token_ttl_seconds
        self.replica = replica
        # The sessions of the tokens this process issued lately, by the exact token: the
        # resource request that follows an attestation presents its token here, so its MAC
        # need not be recomputed nor its claims read again.
        self._issued: OrderedDict[str, AttestedSession] = OrderedDict()
        # The challenges of the cookies this process issued lately, by the exact cookie: a
        # cookie found here is one this key made, so /attest reads it without recomputing
        # its MAC and decoding it. Any other cookie (forged, altered, older, another
        # replica's) misses and is verified in full.
        self._challenges_issued: OrderedDict[str, ChallengeSession] = OrderedDict()

    def new_challenge(self, now: int) -> tuple[ChallengeSession, str]:
        nonce = base64.b64encode(secrets.token_bytes(NONCE_BYTES)).decode()
        session = ChallengeSession(
            nonce=nonce, expires_at=now + self.nonce_ttl_seconds, replica=self.replica
        )
        cookie = self._challenges.encode(nonce, session.expires_at, self.replica)
        _keep(self._challenges_issued, cookie, session, _CHALLENGES_KEPT)
        return session, cookie

    def read_challenge(self, cookie: str | None) -> ChallengeSession:
        """The challenge of this cookie; refuses forged and foreign ones (not expired ones:
        see :meth:`check_fresh`; an attested session outlives its challenge's nonce)."""
        value = _present(cookie, "challenge")
        # Found only by the exact text of a cookie this process made (a string hash under
        # the interpreter's random seed, then a full comparison): a near miss teaches an
        # attacker nothing, and is verified below like any other cookie.
        session = self._challenges_issued.get(value)
        if session is not None:
            return session
        try:
            nonce, expires_at, replica = self._challenges.decode(value)
        except TokenInvalidError:
            raise _not_ours("challenge") from None
        return ChallengeSession(nonce=nonce, expires_at=expires_at, replica=replica)

    def issued_here(self, session: ChallengeSession) -> bool:
        """Whether this process may judge the challenge: it issued it, or nonces are not
        bound to processes."""
        return self.replica is None or session.replica == self.replica

    def check_issued_here(self, session: ChallengeSession) -> None:
        """With nonces bound to this process, refuse one it did not issue: its single use
        is known only where it was issued (a restarted process has another id)."""
        if not self.issued_here(session):
            raise NonceOfAnotherReplicaError(
                "this nonce was issued by another attestation service replica (or before "
                "this one restarted), which alone can tell whether it was used; keep the "
                "exchange on one connection, or start again at /kbs/v0/auth"
            )

    def check_fresh(self, session: ChallengeSession, now: int) -> None:
        """Refuse a challenge whose nonce has expired."""
        if now >= session.expires_at:
            raise NonceExpiredError(
                f"the challenge expired {now - session.expires_at}s ago (nonces live "
                f"{self.nonce_ttl_seconds}s); start again at /kbs/v0/auth"
            )

    def issue_token(self, session: AttestedSession, now: int) -> str:
        claims = {
            "typ": _ATTESTED,
            "iss": ISSUER,
            "iat": now,
            "exp": session.expires_at,
            "pod": session.pod.to_claim(),
            "enclave-container": session.enclave_container,
            "policy": session.policy_hash,
            "tee-pubkey": _jwk_claim(session.tee_pubkey),
        }
        token = self._tokens.encode(claims)
        _keep(self._issued, token, session, _ISSUED_KEPT)
        return token

    def is_challenge(self, value: str) -> bool:
        """Whether ``value`` has the challenge cookie's format (not yet verified): which
        key to verify it with. Nothing in it is trusted before :meth:`read_challenge` (or
        :meth:`read_token`) verifies it, so one verification per request suffices."""
        return ChallengeCookie.looks_like_one(value)

    def read_token(self, token: str | None, now: int) -> AttestedSession:
        value = _present(token, "attestation")
        # A token found here by its exact text is one this process signed (as a kept
        # challenge, above); any other is verified and its claims read.
        session = self._issued.get(value)
        if session is None:
            session = self._read_claims(value)
        if now >= session.expires_at:
            raise AttestationExpiredError(
                "the attestation has expired; attest again at /kbs/v0/auth"
            )
        return session

    def _read_claims(self, token: str) -> AttestedSession:
        try:
            claims = self._tokens.decode(token)
        except TokenInvalidError:
            raise _not_ours("attestation") from None
        if claims.get("typ") != _ATTESTED:
            raise SessionMissingError("the session cookie is not an attestation token")
        try:
            session = AttestedSession(
                pod=PodRef(**claims["pod"]),
                enclave_container=str(claims["enclave-container"]),
                policy_hash=str(claims["policy"]),
                tee_pubkey=TeePubKey.model_validate(claims["tee-pubkey"]),
                expires_at=int(claims["exp"]),
            )
        except (KeyError, TypeError, ValueError, ValidationError) as exc:
            raise SessionMissingError("the attestation token lacks its fields") from exc
        return session


def _keep(table: OrderedDict[_K, _V], key: _K, value: _V, most: int) -> None:
    """Add to a table of at most ``most`` entries, forgetting the oldest (in O(1): a plain
    dict's first key is found past the holes its evicted predecessors left)."""
    if len(table) >= most:
        table.popitem(last=False)
    table[key] = value


def _jwk_claim(key: TeePubKey) -> dict[str, str]:
    """``key.to_wire()`` (all its fields are required strings), without pydantic's
    serializer on the way of every attestation."""
    return {"kty": key.kty, "crv": key.crv, "alg": key.alg, "x": key.x, "y": key.y}


def _derive(master_key: bytes, label: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label.encode()).derive(
        master_key
    )


def _present(value: str | None, what: str) -> str:
    if not value:
        raise SessionMissingError(
            f"no {what} session: send the kbs-session-id cookie from the previous step"
        )
    return value


def _not_ours(what: str) -> SessionMissingError:
    return SessionMissingError(f"the {what} session cookie is not one this service issued")
