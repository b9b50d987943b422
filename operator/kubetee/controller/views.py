"""The few fields of each watched object the operator decides on, read once per event.

kopf hands raw bodies to the indexes; each is reduced here to a small frozen view, so
the indexes hold little memory and the decisions never dig through raw dicts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubetee.controller.names import (
    ATTESTED_CLAIMS_ANNOTATION,
    ATTESTED_CONDITION,
    EC_LABEL,
    ENCLAVE_RESOURCE,
    EPC_RESOURCE,
    SPEC_HASH_ANNOTATION,
)
from kubetee.tcb.names import DEADLINE_ANNOTATION, STATE_ANNOTATION, WITHDRAWN

Body = Mapping[str, Any]

_TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


def _int_quantity(value: Any) -> int:
    """An extended resource's count (``"128"``); anything else counts as none."""
    try:
        return max(int(str(value)), 0)
    except ValueError:
        return 0


def _condition(conditions: Any, type_: str) -> Mapping[str, Any] | None:
    for condition in conditions or ():
        if condition.get("type") == type_:
            found: Mapping[str, Any] = condition
            return found
    return None


@dataclass(frozen=True, slots=True)
class NodeView:
    """A node as the EPC accounting sees it."""

    name: str
    labels: Mapping[str, str]
    ready: bool
    unschedulable: bool
    capacity_mib: int
    allocatable_mib: int
    enclave_slots: int
    # kubetee.io/enclave capacity (all slots the device plugin advertises, healthy or not).
    enclave_capacity: int = 0

    @property
    def cannot_run_enclaves(self) -> bool:
        """Enclave slots advertised but none usable: the node's device plugin marks
        them unhealthy while its quoting service is down (or is down itself), so no
        enclave there can attest now."""
        return self.enclave_capacity > 0 and self.enclave_slots == 0

    def matches(self, selector: Mapping[str, str]) -> bool:
        """Whether the node carries every label of ``selector``."""
        return all(self.labels.get(key) == value for key, value in selector.items())


def node_view(body: Body) -> NodeView:
    status = body.get("status") or {}
    capacity = status.get("capacity") or {}
    allocatable = status.get("allocatable") or {}
    ready = _condition(status.get("conditions"), "Ready")
    return NodeView(
        name=body["metadata"]["name"],
        labels=dict(body["metadata"].get("labels") or {}),
        ready=ready is not None and ready.get("status") == "True",
        unschedulable=bool((body.get("spec") or {}).get("unschedulable")),
        capacity_mib=_int_quantity(capacity.get(EPC_RESOURCE, 0)),
        allocatable_mib=_int_quantity(allocatable.get(EPC_RESOURCE, 0)),
        enclave_slots=_int_quantity(allocatable.get(ENCLAVE_RESOURCE, 0)),
        enclave_capacity=_int_quantity(capacity.get(ENCLAVE_RESOURCE, 0)),
    )


def _container_request(container: Mapping[str, Any], resource: str) -> int:
    resources = container.get("resources") or {}
    # Extended resources need requests == limits; a limit alone implies the request.
    for part in ("requests", "limits"):
        value = (resources.get(part) or {}).get(resource)
        if value is not None:
            return _int_quantity(value)
    return 0


def pod_request(spec: Mapping[str, Any], resource: str) -> int:
    """What the scheduler counts of ``resource`` for a pod.

    Containers and native sidecars (restartable init containers) run together and add
    up; an ordinary init container runs alone first, so only the largest one matters.
    """
    sidecars = 0
    largest_init = 0
    for init in spec.get("initContainers") or ():
        if init.get("restartPolicy") == "Always":
            sidecars += _container_request(init, resource)
        else:
            # Runs beside the sidecars started before it, before the containers.
            largest_init = max(largest_init, sidecars + _container_request(init, resource))
    containers = sum(_container_request(c, resource) for c in spec.get("containers") or ())
    return max(containers + sidecars, largest_init)


@dataclass(frozen=True, slots=True)
class EnclaveIdentity:
    """The enclave identity a replica proved, from the attestation service's record."""

    mrenclave: str
    mrsigner: str
    isv_prod_id: int
    isv_svn: int


def _attested_identity(annotations: Mapping[str, Any]) -> EnclaveIdentity | None:
    """The identity in ``kubetee.io/attested-claims``; None when absent or unreadable."""
    try:
        claims = json.loads(annotations[ATTESTED_CLAIMS_ANNOTATION])
        return EnclaveIdentity(
            mrenclave=str(claims["mrenclave"]),
            mrsigner=str(claims["mrsigner"]),
            isv_prod_id=int(claims["isvProdId"]),
            isv_svn=int(claims["isvSvn"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class PodView:
    """A pod: where it is bound, what EPC it holds, how far its replica got."""

    namespace: str
    name: str
    node: str
    epc_mib: int
    enclaves: int
    terminated: bool
    terminating: bool
    enclave_container: str
    scheduled: bool
    unschedulable_message: str
    ready: bool
    attested: bool
    template_hash: str
    identity: EnclaveIdentity | None = None
    # "pending" while TCB recovery moves it, "withdrawn" after its deadline, else "".
    tcb_recovery: str = ""
    # Why its node's kubelet refused to admit it (Failed before any container ran), else "".
    admission_refusal: str = ""

    @property
    def holds_epc(self) -> bool:
        """Bound, not terminated, and requesting EPC: counted in its node's allocation."""
        return bool(self.node) and not self.terminated and self.epc_mib > 0


def pod_view(body: Body) -> PodView:
    metadata = body["metadata"]
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    conditions = status.get("conditions")
    scheduled = _condition(conditions, "PodScheduled")
    ready = _condition(conditions, "Ready")
    attested = _condition(conditions, ATTESTED_CONDITION)
    labels = metadata.get("labels") or {}
    unschedulable = (
        scheduled is not None
        and scheduled.get("status") == "False"
        and scheduled.get("reason") == "Unschedulable"
    )
    return PodView(
        namespace=metadata.get("namespace", ""),
        name=metadata["name"],
        node=spec.get("nodeName") or "",
        epc_mib=pod_request(spec, EPC_RESOURCE),
        enclaves=pod_request(spec, ENCLAVE_RESOURCE),
        terminated=status.get("phase") in _TERMINAL_PHASES,
        terminating=metadata.get("deletionTimestamp") is not None,
        enclave_container=labels.get(EC_LABEL, ""),
        scheduled=bool(spec.get("nodeName")),
        unschedulable_message=(scheduled or {}).get("message", "") if unschedulable else "",
        ready=ready is not None and ready.get("status") == "True",
        attested=attested is not None and attested.get("status") == "True",
        template_hash=labels.get("pod-template-hash", ""),
        identity=_attested_identity(metadata.get("annotations") or {}),
        tcb_recovery=_tcb_recovery(metadata.get("annotations") or {}),
        admission_refusal=_admission_refusal(status),
    )


def _admission_refusal(status: Mapping[str, Any]) -> str:
    """``reason: message`` of a pod its kubelet refused at admission, e.g. when a device
    plugin had no healthy device to allocate; Kubernetes leaves such pods Failed for good."""
    if status.get("phase") != "Failed" or not status.get("reason"):
        return ""
    started = any(
        set(container.get("state") or {}) - {"waiting"}
        for container in status.get("containerStatuses") or ()
    )
    if started:
        return ""
    return f"{status['reason']}: {status.get('message') or 'no message'}"


def _tcb_recovery(annotations: Mapping[str, Any]) -> str:
    if annotations.get(STATE_ANNOTATION) == WITHDRAWN:
        return WITHDRAWN
    return "pending" if annotations.get(DEADLINE_ANNOTATION) else ""


@dataclass(frozen=True, slots=True)
class DeploymentView:
    """The owned Deployment of an EnclaveContainer, as last seen."""

    namespace: str
    name: str
    controller_uid: str
    spec_hash: str
    generation: int
    observed_generation: int
    spec_replicas: int
    replicas: int
    updated_replicas: int
    replica_failure: str
    # The rolling update's budget as written (an integer or a percentage).
    max_unavailable: int | str = 1


def deployment_view(body: Body) -> DeploymentView:
    metadata = body["metadata"]
    status = body.get("status") or {}
    controller: Mapping[str, Any] = next(
        (ref for ref in metadata.get("ownerReferences") or () if ref.get("controller")), {}
    )
    failure = _condition(status.get("conditions"), "ReplicaFailure")
    spec = body.get("spec") or {}
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    return DeploymentView(
        namespace=metadata.get("namespace", ""),
        name=metadata["name"],
        controller_uid=controller.get("uid", ""),
        spec_hash=(metadata.get("annotations") or {}).get(SPEC_HASH_ANNOTATION, ""),
        generation=int(metadata.get("generation") or 0),
        observed_generation=int(status.get("observedGeneration") or 0),
        spec_replicas=int(spec.get("replicas", 1)),
        replicas=int(status.get("replicas") or 0),
        updated_replicas=int(status.get("updatedReplicas") or 0),
        replica_failure=(failure or {}).get("message", "")
        if (failure or {}).get("status") == "True"
        else "",
        # Missing only before the apiserver defaulted it (to 25%).
        max_unavailable=rolling.get("maxUnavailable", "25%"),
    )


@dataclass(frozen=True, slots=True)
class DisruptionBudgetView:
    """The owned PodDisruptionBudget of an EnclaveContainer, as last seen."""

    namespace: str
    name: str
    controller_uid: str
    spec_hash: str


def disruption_budget_view(body: Body) -> DisruptionBudgetView:
    metadata = body["metadata"]
    controller: Mapping[str, Any] = next(
        (ref for ref in metadata.get("ownerReferences") or () if ref.get("controller")), {}
    )
    return DisruptionBudgetView(
        namespace=metadata.get("namespace", ""),
        name=metadata["name"],
        controller_uid=controller.get("uid", ""),
        spec_hash=(metadata.get("annotations") or {}).get(SPEC_HASH_ANNOTATION, ""),
    )


@dataclass(frozen=True, slots=True)
class ResourceView:
    """A KubeTEE custom resource: identity, raw spec (validated later) and stored status."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any] = field(default_factory=dict)
    deleting: bool = False
    # metadata.creationTimestamp (RFC 3339 in UTC: its text sorts by time).
    created: str = ""


def resource_view(body: Body) -> ResourceView:
    metadata = body["metadata"]
    return ResourceView(
        namespace=metadata.get("namespace") or "",
        name=metadata["name"],
        uid=metadata.get("uid", ""),
        generation=int(metadata.get("generation") or 0),
        # Each watch event brings freshly parsed dicts that nobody changes afterwards:
        # keeping them costs no copy.
        spec=dict(body.get("spec") or {}),
        status=dict(body.get("status") or {}),
        deleting=metadata.get("deletionTimestamp") is not None,
        created=str(metadata.get("creationTimestamp") or ""),
    )
