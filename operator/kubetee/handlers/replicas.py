"""Replica pods (labelled with their EnclaveContainer): one index for every reader.

The reconcilers, the attestation upkeep and TCB recovery each read replicas in their own
view. kopf calls one handler per index on every pod event, and that call costs more than
computing all three views; so one index holds the three, and each reader gets its view
through :class:`~kubetee.reconcile.caches.Projected`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import kopf

from kubetee.attestation_service.replicas import ReplicaAttestation, replica_attestation
from kubetee.controller.names import EC_LABEL
from kubetee.controller.views import PodView, pod_view
from kubetee.reconcile.caches import ObjectKey, Projected
from kubetee.tcb.recovery import TcbReplica, tcb_replica

INDEX = "replica_index"


@dataclass(frozen=True, slots=True)
class Replica:
    """One replica pod in the three views read of it."""

    pod: PodView
    attestation: ReplicaAttestation
    tcb: TcbReplica


# The same body reaches replica_index, then pod_node_index and pod_event (one event,
# three handlers): its view is computed once.
_last: list[tuple[kopf.Body, object, PodView]] = []


def cached_pod_view(body: kopf.Body) -> PodView:
    """``pod_view(body)``, once per watch event however many handlers ask."""
    version = body.metadata.get("resourceVersion")
    if _last and _last[0][0] is body and _last[0][1] == version:
        return _last[0][2]
    view = pod_view(body)
    _last[:] = [(body, version, view)]
    return view


@kopf.index("", "v1", "pods", labels={EC_LABEL: kopf.PRESENT}, id=INDEX)
async def replica_index(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[ObjectKey, Replica]:
    return {
        (namespace or "", labels[EC_LABEL]): Replica(
            cached_pod_view(body), replica_attestation(body), tcb_replica(body)
        )
    }


def _pod(replica: Replica) -> PodView:
    return replica.pod


def _attestation(replica: Replica) -> ReplicaAttestation:
    return replica.attestation


def _tcb(replica: Replica) -> TcbReplica:
    return replica.tcb


def pods(kwargs: dict[str, Any]) -> Projected[ObjectKey, Replica, PodView]:
    """Replica pods by EnclaveContainer, from the indexes kopf hands a handler."""
    return Projected(kwargs[INDEX], _pod)


def attestations(kwargs: dict[str, Any]) -> Projected[ObjectKey, Replica, ReplicaAttestation]:
    return Projected(kwargs[INDEX], _attestation)


def tcb_replicas(kwargs: dict[str, Any]) -> Projected[ObjectKey, Replica, TcbReplica]:
    return Projected(kwargs[INDEX], _tcb)
