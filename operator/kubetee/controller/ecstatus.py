"""Status of an EnclaveContainer, computed from what is observed, never remembered.

Three conditions: ``Scheduled`` (every desired replica is bound to a node), ``Attested``
(every replica's enclave passed attestation) and ``Ready``. When something blocks the
replicas the reason says what: the spec (``InvalidSpec``), the pool (``PoolNotFound``),
EPC (``InsufficientEPC``, with the free EPC of the pool in the message), the attestation
service (``AttestationUnavailable``, naming it). ``status.attestation`` says what the
policy pins and which identities the attested replicas proved.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from kubetee.api.quantity import format_mebibytes
from kubetee.api.v1alpha1 import (
    AttestationStatus,
    AttestedEnclave,
    EnclaveContainerSpec,
    EnclaveContainerStatus,
    EPCStatus,
)
from kubetee.attestation.policy import AttestationPolicy
from kubetee.controller.accounting import FreeEPC
from kubetee.controller.conditions import Observed, merge_conditions
from kubetee.controller.deployment import serialized_selector
from kubetee.controller.names import ENCLAVE_RESOURCE, EPC_RESOURCE
from kubetee.controller.overdue import REATTESTATION_OVERDUE
from kubetee.controller.service_health import ATTESTATION_UNAVAILABLE, REACHABLE, ServiceHealth
from kubetee.controller.views import DeploymentView, PodView
from kubetee.tcb.names import PENDING_CONDITION, WITHDRAWN

NODE_CANNOT_ATTEST = "NodeCannotAttest"
SCHEDULED = "Scheduled"
ATTESTED = "Attested"
READY = "Ready"

# Reasons a user sees as warnings (Events of type Warning).
WARNING_REASONS = frozenset(
    {
        "InvalidSpec",
        "PoolNotFound",
        "DeploymentConflict",
        "InsufficientEPC",
        "InsufficientEnclaveSlots",
        "Unschedulable",
        "EPCQuotaExceeded",
        "ReplicaFailure",
        "NodeLost",
        "NodeNotReady",
        ATTESTATION_UNAVAILABLE,
        NODE_CANNOT_ATTEST,
    }
)
# Hex digits of a pinned value shown in status.attestation.pinned (the spec has them all).
_SHOWN_HEX = 16


@dataclass(frozen=True, slots=True)
class Blocker:
    """Why no replica can be run at all (a spec, pool or ownership problem)."""

    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything the status of one EnclaveContainer is computed from."""

    name: str
    generation: int
    spec: EnclaveContainerSpec | None
    pool: str
    blocker: Blocker | None
    pods: Sequence[PodView]
    deployment: DeploymentView | None
    free: FreeEPC
    attestation: ServiceHealth = field(default=REACHABLE)
    # Nodes replicas are bound to that no longer exist, or are not Ready.
    lost_nodes: frozenset[str] = frozenset()
    unready_nodes: frozenset[str] = frozenset()
    # Nodes whose enclave slots are all unhealthy (quoting service or device plugin down).
    nodes_cannot_attest: frozenset[str] = frozenset()
    # Replica pods (names) that stopped renewing their attestation (controller.overdue).
    overdue: frozenset[str] = frozenset()


def _placed(obs: Observation, pod: PodView) -> bool:
    """Bound to a node that still exists (one deleted takes its replicas with it)."""
    return pod.scheduled and pod.node not in obs.lost_nodes


def _ready(pod: PodView) -> bool:
    """Ready with its attestation gate holding: a kubelet never reports one without the
    other, a simulated node (KWOK) may."""
    return pod.ready and pod.attested


def _names(nodes: Sequence[str]) -> str:
    return ", ".join(sorted(nodes))


def _lost(obs: Observation, desired: int, live: list[PodView]) -> Observed | None:
    lost = {pod.node for pod in live if pod.scheduled and pod.node in obs.lost_nodes}
    if not lost:
        return None
    count = sum(1 for pod in live if pod.scheduled and pod.node in lost)
    return Observed(
        SCHEDULED,
        "False",
        "NodeLost",
        f"{count} of {desired} replicas are bound to nodes that no longer exist "
        f"({_names(list(lost))}): Kubernetes replaces them",
    )


def _replica_failure(obs: Observation) -> Observed | None:
    failure = obs.deployment.replica_failure if obs.deployment else ""
    if not failure:
        return None
    reason = "EPCQuotaExceeded" if "exceeded quota" in failure else "ReplicaFailure"
    return Observed(SCHEDULED, "False", reason, failure)


def _scheduling(obs: Observation, desired: int, live: list[PodView]) -> Observed:
    scheduled = sum(1 for pod in live if _placed(obs, pod))
    stuck = [pod for pod in live if pod.unschedulable_message]
    if stuck:
        messages = [pod.unschedulable_message for pod in stuck]
        head = f"{len(stuck)} of {desired} replicas cannot be scheduled"
        if any(f"Insufficient {EPC_RESOURCE}" in m for m in messages) and obs.spec is not None:
            where = f"pool {obs.pool}" if obs.pool else "the cluster"
            free = obs.free
            return Observed(
                SCHEDULED,
                "False",
                "InsufficientEPC",
                f"{head}: each needs {format_mebibytes(obs.spec.epc_mebibytes)} EPC and "
                f"{where} has {format_mebibytes(free.total_mib)} free "
                f"(at most {format_mebibytes(free.largest_mib)} on one node, "
                f"{free.ready_nodes} of {free.nodes} nodes ready)",
            )
        if any(f"Insufficient {ENCLAVE_RESOURCE}" in m for m in messages):
            return Observed(
                SCHEDULED,
                "False",
                "InsufficientEnclaveSlots",
                f"{head}: the nodes run as many enclaves as they can; {messages[0]}",
            )
        return Observed(SCHEDULED, "False", "Unschedulable", f"{head}: {messages[0]}")
    blocked = _lost(obs, desired, live) or _replica_failure(obs)
    if blocked is not None:
        return blocked
    counted = f"{scheduled} of {desired} replicas scheduled"
    if scheduled >= desired:
        return Observed(SCHEDULED, "True", "ReplicasScheduled", counted)
    return Observed(SCHEDULED, "Unknown", "Scheduling", counted)


def _conditions(obs: Observation, desired: int, live: list[PodView]) -> list[Observed]:
    if obs.blocker is not None:
        reason, message = obs.blocker.reason, obs.blocker.message
        return [
            Observed(SCHEDULED, "False", reason, message),
            Observed(ATTESTED, "False", reason, message),
            Observed(READY, "False", reason, message),
        ]
    scheduled = _scheduling(obs, desired, live)
    attested = sum(1 for pod in live if pod.attested)
    ready = sum(1 for pod in live if _ready(pod))
    service = obs.attestation
    counted = f"{attested} of {desired} replicas attested"
    if not service.reachable:
        # Attested replicas stay attested until their attestation expires; whether they
        # still would be is unknown while the service cannot be asked.
        attested_condition = Observed(
            ATTESTED,
            "Unknown" if attested >= desired else "False",
            ATTESTATION_UNAVAILABLE,
            f"{counted}; {service.message}",
        )
    elif attested >= desired:
        at_risk = _on_nodes(obs, [pod for pod in live if pod.attested])
        note = (
            f"; {at_risk} cannot re-attest: {_NODE_CAUSE}, and lose their attestation "
            "when it expires"
            if at_risk
            else ""
        )
        overdue = sorted(pod.name for pod in live if pod.attested and pod.name in obs.overdue)
        if overdue and not at_risk:  # a node's cause, when known, says more
            note = (
                f"; {_names(overdue)} stopped renewing their attestation and lose it when it "
                "expires (the ReattestationOverdue Event says where to look)"
            )
        reason = REATTESTATION_OVERDUE if overdue and not at_risk else "ReplicasAttested"
        attested_condition = Observed(ATTESTED, "True", reason, counted + note)
    elif stuck := _on_nodes(obs, [pod for pod in live if not pod.attested]):
        attested_condition = Observed(
            ATTESTED,
            "False",
            NODE_CANNOT_ATTEST,
            f"{counted}; {stuck} cannot attest: {_NODE_CAUSE}",
        )
    else:
        attested_condition = Observed(ATTESTED, "False", "AttestationPending", counted)
    ready_message = f"{ready} of {desired} replicas ready"
    if ready >= desired and len(live) == desired:
        ready_condition = Observed(READY, "True", "ReplicasReady", ready_message)
    elif scheduled.status == "False":
        ready_condition = Observed(READY, "False", scheduled.reason, ready_message)
    elif unready := sorted({p.node for p in live if not _ready(p) and p.node in obs.unready_nodes}):
        ready_condition = Observed(
            READY, "False", "NodeNotReady", f"{ready_message}: nodes not ready: {_names(unready)}"
        )
    elif attested < desired:
        ready_condition = Observed(READY, "False", attested_condition.reason, ready_message)
    else:
        ready_condition = Observed(READY, "False", "ReplicasNotReady", ready_message)
    return [scheduled, attested_condition, ready_condition]


def _tcb_recovery(previous: EnclaveContainerStatus, live: list[PodView]) -> list[Observed]:
    """TcbRecoveryPending, once TCB recovery has concerned the EnclaveContainer: replicas
    on platforms a newer TCB evaluation made unacceptable (False again when none are)."""
    observed = _tcb_recovery_condition(live)
    shown = any(c.type == PENDING_CONDITION for c in previous.conditions)
    return [observed] if shown or observed.status == "True" else []


def _tcb_recovery_condition(live: list[PodView]) -> Observed:
    pending = sum(1 for pod in live if pod.tcb_recovery == "pending" and pod.attested)
    withdrawn = sum(1 for pod in live if pod.tcb_recovery == WITHDRAWN)
    if pending or withdrawn:
        return Observed(
            PENDING_CONDITION,
            "True",
            "PlatformNotAccepted",
            f"{pending} replicas are being moved off platforms attestation.policy no longer "
            f"accepts; {withdrawn} could not be moved in time and lost their secrets",
        )
    return Observed(
        PENDING_CONDITION,
        "False",
        "PlatformsAccepted",
        "every replica runs on a platform attestation.policy accepts",
    )


_NODE_CAUSE = (
    "the node's enclave slots are unhealthy (its quoting service, or its EPC device "
    "plugin, is down; see the node's kubetee.io/enclave allocatable and its daemons' logs)"
)


def _on_nodes(obs: Observation, pods: Sequence[PodView]) -> str:
    """``2 replicas on node sgx-node-1`` for pods on nodes that cannot attest, or ""."""
    hit = [pod for pod in pods if pod.node in obs.nodes_cannot_attest]
    if not hit:
        return ""
    nodes = ", ".join(sorted({pod.node for pod in hit}))
    replicas = "1 replica" if len(hit) == 1 else f"{len(hit)} replicas"
    return f"{replicas} on node {nodes}"


def _pinned(values: Sequence[str]) -> str:
    if not values:
        return "any"
    shown = f"{values[0][:_SHOWN_HEX]}…"
    return shown if len(values) == 1 else f"{shown} or {len(values) - 1} more"


def pinned_summary(policy: AttestationPolicy) -> str:
    """What the policy pins, e.g. ``MRENCLAVE f05a5d318f49c27e…, MRSIGNER any``."""
    return f"MRENCLAVE {_pinned(policy.mrenclave)}, MRSIGNER {_pinned(policy.mrsigner)}"


def attestation_status(
    spec: EnclaveContainerSpec | None, live: Sequence[PodView]
) -> AttestationStatus:
    """The pinned identity and, per identity, how many attested replicas proved it."""
    counts = Counter(pod.identity for pod in live if pod.attested and pod.identity is not None)
    enclaves = [
        AttestedEnclave(
            mrenclave=identity.mrenclave,
            mrsigner=identity.mrsigner,
            isv_prod_id=identity.isv_prod_id,
            isv_svn=identity.isv_svn,
            replicas=count,
        )
        for identity, count in sorted(
            counts.items(), key=lambda item: (-item[1], item[0].mrenclave, item[0].isv_svn)
        )
    ]
    return AttestationStatus(
        pinned=pinned_summary(spec.attestation.policy) if spec is not None else "",
        enclaves=enclaves[:16],
    )


def compute_status(
    obs: Observation, previous: EnclaveContainerStatus, now: datetime
) -> EnclaveContainerStatus:
    """The status to store; conditions keep their transition times from ``previous``."""
    desired = obs.spec.replicas if obs.spec is not None and obs.blocker is None else 0
    live = [pod for pod in obs.pods if not pod.terminated and not pod.terminating]
    per_replica = obs.spec.epc_mebibytes if obs.spec is not None else 0
    wanted = obs.spec.replicas if obs.spec is not None else 0
    return EnclaveContainerStatus(
        observed_generation=obs.generation,
        replicas=len(live),
        scheduled_replicas=sum(1 for pod in live if _placed(obs, pod)),
        scheduled=f"{sum(1 for pod in live if _placed(obs, pod))}/{wanted}",
        ready_replicas=sum(1 for pod in live if _ready(pod)),
        attested_replicas=sum(1 for pod in live if pod.attested),
        selector=serialized_selector(obs.name),
        pool=obs.pool,
        epc=EPCStatus(
            per_replica=format_mebibytes(per_replica),
            requested=format_mebibytes(per_replica * wanted),
            allocated=format_mebibytes(sum(pod.epc_mib for pod in obs.pods if pod.holds_epc)),
        ),
        attestation=attestation_status(obs.spec, live),
        conditions=merge_conditions(
            previous.conditions,
            [*_conditions(obs, desired, live), *_tcb_recovery(previous, live)],
            obs.generation,
            now,
        ),
    )
