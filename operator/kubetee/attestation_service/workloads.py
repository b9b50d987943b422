"""The workloads the service attests: an EnclaveContainer's policy and secrets, per pod.

The service learns which pod is attesting from the init-data whose digest the verified
quote carries (CONFIGID), never from what a client says: the pod must exist with that
UID, belong to an EnclaveContainer (by the operator's label), and the evidence must
satisfy *that* EnclaveContainer's policy. A policy is identified by a hash so a token issued under
one policy is refused once the policy changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import rfc8785

from kubetee.api.v1alpha1.enclavecontainer import EnclaveContainerSpec, SecretKeyRef
from kubetee.attestation.errors import AttestationError
from kubetee.attestation.policy import AttestationPolicy
from kubetee.attestation.verified import VerifiedQuote
from kubetee.attestation_service.sessions import PodRef


def policy_hash(policy: AttestationPolicy) -> str:
    """A short, stable identifier of a policy's content (not of its YAML spelling).

    The TCB recovery grace says what happens after a TCB evaluation, not what is
    accepted: it is left out, so changing it asks no replica to attest again.
    """
    document = policy.model_dump(mode="json", by_alias=True, exclude={"tcb_recovery_grace_seconds"})
    canonical = rfc8785.dumps(document)
    return hashlib.sha256(canonical).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class EnclaveContainerView:
    """What the service needs of one EnclaveContainer."""

    namespace: str
    name: str
    uid: str
    policy: AttestationPolicy
    policy_hash: str
    secrets: Mapping[str, SecretKeyRef]

    @classmethod
    def from_spec(
        cls, namespace: str, name: str, uid: str, spec: EnclaveContainerSpec
    ) -> EnclaveContainerView:
        policy = spec.attestation.policy
        return cls(
            namespace=namespace,
            name=name,
            uid=uid,
            policy=policy,
            policy_hash=policy_hash(policy),
            secrets={s.name: s.secret_key_ref for s in spec.secrets},
        )


@dataclass(frozen=True, slots=True)
class RecordedAttestation:
    """What the pod already says about its attestation when it is read, so a reporter
    writes only what changed (a steady re-attestation changes little)."""

    annotations: Mapping[str, str]
    condition: Mapping[str, str] | None  # the Attested condition as the pod has it


@dataclass(frozen=True, slots=True)
class Workload:
    """An attesting pod and the EnclaveContainer it is a replica of."""

    pod: PodRef
    node_name: str
    enclave_container: EnclaveContainerView
    # Set by the operator while the replica's platform is being recovered from
    # (kubetee.tcb.grace): until then a refusal of the platform alone is graced.
    tcb_recovery_deadline: datetime | None = None
    # When the pod's TcbRecoveryPending condition turned True: it bounds the deadline.
    tcb_recovery_since: datetime | None = None
    recorded: RecordedAttestation | None = None


class WorkloadDirectory(Protocol):
    """Where the service looks workloads and their secrets up (the Kubernetes API)."""

    async def workload_of(self, pod: PodRef) -> Workload:
        """The workload of an attesting pod; ``WorkloadUnknownError`` if there is none."""
        ...

    async def enclave_container(self, namespace: str, name: str) -> EnclaveContainerView:
        """The current view of an EnclaveContainer; ``WorkloadUnknownError`` if gone."""
        ...

    async def secret_value(self, namespace: str, ref: SecretKeyRef) -> bytes:
        """The bytes of one Secret key; ``ResourceNotFoundError`` if it is missing."""
        ...


class PlatformCheck(Protocol):
    """Whether verified evidence comes from the platform registered for the pod's node.

    Called after the quote verified and names ``workload``'s pod, before the policy;
    raises an ``AttestationError`` (reported on the EnclaveContainer) when it does not.
    """

    async def check(self, workload: Workload, verified: VerifiedQuote) -> None: ...


class AttestationReporter(Protocol):
    """Where outcomes become visible: pod readiness gate, Events.

    Only outcomes of verified evidence are reported, and only on the workload that
    evidence names: an unauthenticated request makes the service write nothing.
    """

    async def attested(
        self, workload: Workload, verified: VerifiedQuote, valid_until: datetime
    ) -> None: ...

    async def refused(self, workload: Workload, error: AttestationError) -> None: ...
