"""Single use of nonces across all replicas of the attestation service, and their outcome.

A nonce is *recorded* once evidence bound to it has been verified (never before: an
unauthenticated request writes nothing), with the attestation's outcome: the attested
token, or none when the policy refused. A second record is a replay. By default each
nonce is bound to the service process that issued it (:mod:`.sessions`), so
:class:`MemoryNonceLedger` in that process is the whole truth about it, and a replay is
refused before its quote is even verified, with no apiserver write at all. For clients
that cannot keep an exchange on one connection, the ledger can instead be shared
through the apiserver: :class:`LeaseNonceLedger` creates a
``coordination.k8s.io`` Lease named after the nonce's hash in the service's namespace,
and the apiserver's ``AlreadyExists`` is the replay verdict, atomically, whichever
replica sees the second attempt. The token kept there lets a client present its
``/auth`` cookie for resources. Leases are collected once both the nonce and the token
have expired.
Given an owner (the chart's ConfigMap ``<release>-attestation-nonces``), every Lease
names it in its ownerReferences, so the garbage collector removes the Leases with the
release.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import UTC, datetime
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

from kubetee.attestation_service.errors import BackendUnavailableError, NonceReplayedError

log = logging.getLogger(__name__)

LEASE_PREFIX = "kbs-nonce-"
NONCE_LABEL = "kubetee.io/kbs-nonce"
EXPIRES_ANNOTATION = "kubetee.io/expires-at"
TOKEN_ANNOTATION = "kubetee.io/attested-token"  # noqa: S105  # an annotation name
_CONFLICT = 409
_NOT_FOUND = 404


def nonce_id(nonce: str) -> str:
    """A name for the nonce that reveals nothing about it (the nonce is not secret, but short
    names keep Lease names valid whatever the nonce's alphabet)."""
    return hashlib.sha256(nonce.encode()).hexdigest()[:40]


class NonceLedger(Protocol):
    async def record(self, nonce: str, expires_at: int, token: str | None) -> None:
        """Record the nonce as used, kept until ``expires_at``, with the attested token
        (``None``: refused); :class:`NonceReplayedError` if it already was used."""
        ...

    async def attested_token(self, nonce: str) -> str | None:
        """The token of the nonce's successful attestation, if there was one."""
        ...

    def known_used(self, nonce: str) -> bool:
        """Whether this process already knows the nonce was used: a check without I/O
        before verification, so a replay costs no verification; ``record`` decides."""
        ...


class MemoryNonceLedger:
    """A ledger for one process (tests, benchmarks, a single replica)."""

    def __init__(self) -> None:
        self._used: dict[str, tuple[int, str | None]] = {}
        self._lock = asyncio.Lock()

    async def record(self, nonce: str, expires_at: int, token: str | None) -> None:
        key = nonce_id(nonce)
        async with self._lock:
            if key in self._used:
                raise NonceReplayedError("this nonce was already used for an attestation")
            self._used[key] = (expires_at, token)

    async def attested_token(self, nonce: str) -> str | None:
        entry = self._used.get(nonce_id(nonce))
        return entry[1] if entry is not None else None

    def known_used(self, nonce: str) -> bool:
        return nonce_id(nonce) in self._used

    def collect_expired(self, now: int) -> int:
        expired = [key for key, (expires, _) in self._used.items() if expires <= now]
        for key in expired:
            del self._used[key]
        return len(expired)


class LeaseNonceLedger:
    """A ledger shared through Leases, for several replicas behind one Service."""

    def __init__(
        self,
        coordination_api: Any,
        namespace: str,
        holder: str,
        *,
        core_api: Any = None,
        owner: str | None = None,
    ) -> None:
        # coordination_api: kubernetes.client.CoordinationV1Api, core_api: CoreV1Api
        # (untyped library); core_api reads the owner ConfigMap when one is named.
        if owner is not None and core_api is None:
            raise ValueError("a nonce Lease owner needs the core API to look it up")
        self._api = coordination_api
        self._core = core_api
        self._namespace = namespace
        self._holder = holder
        self._owner = owner
        self._owner_reference: dict[str, Any] | None = None

    async def record(self, nonce: str, expires_at: int, token: str | None) -> None:
        await asyncio.to_thread(self._create, nonce_id(nonce), expires_at, token)

    async def attested_token(self, nonce: str) -> str | None:
        return await asyncio.to_thread(self._token, nonce_id(nonce))

    def known_used(self, nonce: str) -> bool:
        del nonce  # only the apiserver knows: the Lease's creation is the verdict
        return False

    def _token(self, key: str) -> str | None:
        try:
            lease = self._api.read_namespaced_lease(LEASE_PREFIX + key, self._namespace)
        except ApiException as exc:
            if exc.status == _NOT_FOUND:
                return None
            raise BackendUnavailableError(
                f"cannot read the nonce record (Kubernetes API {exc.status} {exc.reason})"
            ) from None
        token = (lease.metadata.annotations or {}).get(TOKEN_ANNOTATION)
        return str(token) if token else None

    def _owner_references(self) -> list[dict[str, Any]]:
        """The owner ConfigMap's reference, looked up once (its uid never changes)."""
        if self._owner is None:
            return []
        if self._owner_reference is None:
            try:
                owner = self._core.read_namespaced_config_map(self._owner, self._namespace)
            except ApiException as exc:
                # A Lease owned by a missing object is collected at once, which would
                # reopen the replay window: refuse rather than record it unowned.
                raise BackendUnavailableError(
                    f"cannot read ConfigMap {self._namespace}/{self._owner}, the owner of "
                    f"nonce Leases (Kubernetes API {exc.status} {exc.reason}); reinstall "
                    "the chart or start the service without --nonce-owner"
                ) from None
            self._owner_reference = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": self._owner,
                "uid": owner.metadata.uid,
            }
        return [self._owner_reference]

    def _create(self, key: str, expires_at: int, token: str | None) -> None:
        now = datetime.now(UTC)
        annotations = {EXPIRES_ANNOTATION: str(expires_at)}
        if token is not None:
            annotations[TOKEN_ANNOTATION] = token
        metadata: dict[str, Any] = {
            "name": LEASE_PREFIX + key,
            "labels": {
                NONCE_LABEL: "true",
                "app.kubernetes.io/managed-by": "kubetee-attestation-service",
            },
            "annotations": annotations,
        }
        owners = self._owner_references()
        if owners:
            metadata["ownerReferences"] = owners
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": self._holder,
                "leaseDurationSeconds": max(1, expires_at - int(now.timestamp())),
                "acquireTime": now.isoformat(timespec="microseconds"),
            },
        }
        try:
            self._api.create_namespaced_lease(self._namespace, body)
        except ApiException as exc:
            if exc.status == _CONFLICT:
                raise NonceReplayedError("this nonce was already used for an attestation") from None
            raise BackendUnavailableError(
                f"cannot record the nonce in namespace {self._namespace} "
                f"(Kubernetes API {exc.status} {exc.reason})"
            ) from None

    async def collect_expired(self, now: int) -> int:
        return await asyncio.to_thread(self._collect, now)

    def _collect(self, now: int) -> int:
        leases = self._api.list_namespaced_lease(
            self._namespace, label_selector=f"{NONCE_LABEL}=true"
        )
        deleted = 0
        for lease in leases.items:
            annotations = lease.metadata.annotations or {}
            try:
                expires_at = int(annotations.get(EXPIRES_ANNOTATION, "0"))
            except ValueError:
                expires_at = 0
            if expires_at > now:
                continue
            try:
                self._api.delete_namespaced_lease(lease.metadata.name, self._namespace)
                deleted += 1
            except ApiException as exc:
                if exc.status != _NOT_FOUND:  # another replica collected it first
                    log.warning("cannot delete expired nonce lease: %s", exc.reason)
        return deleted
