"""The Deployment that runs an EnclaveContainer's replicas.

A Deployment rather than bare pods: rolling updates on spec changes, a revision
history, and the ReplicaSet controller recreating lost replicas come for free, and the
scale subresource of the EnclaveContainer maps onto its ``replicas`` one to one.
(docs/operator.md has the longer argument.) Each pod gets the enclave runtime holding
its EPC (the enclave container running the workload, :mod:`.enclave_container`, or the
sidecar of an enclave without an image, :mod:`.sidecar`), the ``kubetee.io/attested``
readiness gate, and the pool's placement: node affinity to the pool's nodes (and, when
the operator judges nodes' TCB, to nodes whose ``kubetee.io/sgx-tcb-status`` the policy
accepts) and the scheduler profile of its strategy.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from kubetee.api.v1alpha1 import EnclaveContainerSpec, EPCPoolSpec
from kubetee.api.v1alpha1.enclavecontainer import SECRETS_MOUNT_PATH
from kubetee.controller.enclave_container import enclave_container, enclave_volumes
from kubetee.controller.names import (
    API_VERSION,
    ATTESTED_CONDITION,
    EC_LABEL,
    MANAGED_BY_LABEL,
    POOL_LABEL,
    SPEC_HASH_ANNOTATION,
)
from kubetee.controller.sidecar import (
    SECRETS_VOLUME,
    RuntimeSettings,
    runtime_container,
    runtime_volumes,
)
from kubetee.tcb.names import TCB_STATUS_LABEL

Manifest = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Owner:
    """The EnclaveContainer a Deployment belongs to."""

    namespace: str
    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class Placement:
    """Where replicas may run and which scheduler profile places them."""

    pool: str
    node_selector: dict[str, str]
    scheduler_name: str

    @classmethod
    def of_pool(cls, name: str, pool: EPCPoolSpec) -> Placement:
        return cls(name, dict(pool.node_selector), pool.scheduler_name)

    @classmethod
    def anywhere(cls, scheduler_name: str) -> Placement:
        return cls("", {}, scheduler_name)


def selector_labels(name: str) -> dict[str, str]:
    """The labels that select an EnclaveContainer's pods."""
    return {EC_LABEL: name}


def serialized_selector(name: str) -> str:
    """``status.selector`` for the scale subresource: ``key=value`` pairs."""
    return ",".join(f"{key}={value}" for key, value in sorted(selector_labels(name).items()))


def _node_affinity(
    affinity: dict[str, Any], selector: dict[str, str], tcb_statuses: list[str] | None = None
) -> dict[str, Any]:
    """Require the pool's labels, and a TCB status the policy accepts, in every node
    selector term (terms are ORed)."""
    expressions = [
        {"key": key, "operator": "In", "values": [value]} for key, value in sorted(selector.items())
    ]
    if tcb_statuses:
        expressions.append({"key": TCB_STATUS_LABEL, "operator": "In", "values": tcb_statuses})
    if not expressions:
        return affinity
    node_affinity = affinity.setdefault("nodeAffinity", {})
    required = node_affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    terms = required.get("nodeSelectorTerms") or [{}]
    for term in terms:
        term["matchExpressions"] = [*(term.get("matchExpressions") or []), *expressions]
    required["nodeSelectorTerms"] = terms
    return affinity


def pod_template(
    owner: Owner, spec: EnclaveContainerSpec, placement: Placement, runtime: RuntimeSettings
) -> Manifest:
    """The replicas' pod template: the user's, plus the enclave runtime and placement."""
    pod: dict[str, Any] = copy.deepcopy(
        spec.template.spec.model_dump(by_alias=True, exclude_none=True)
    )
    if spec.enclave.runs_workload:
        # The workload runs inside the enclave container; the others get no secret.
        pod["containers"] = [
            enclave_container(owner.name, owner.namespace, spec, runtime),
            *pod["containers"],
        ]
        pod["volumes"] = [*(pod.get("volumes") or []), *enclave_volumes(spec)]
    else:
        _add_runtime_sidecar(pod, owner, spec, runtime)
    pod["readinessGates"] = [
        *(pod.get("readinessGates") or []),
        {"conditionType": ATTESTED_CONDITION},
    ]
    pod["schedulerName"] = placement.scheduler_name
    accepted = spec.attestation.policy.accepted_tcb_statuses if runtime.tcb_placement else None
    affinity = _node_affinity(
        copy.deepcopy(dict(pod.get("affinity") or {})),
        placement.node_selector,
        list(accepted) if accepted else None,
    )
    if affinity:
        pod["affinity"] = affinity
    labels = {**spec.template.metadata.labels, **selector_labels(owner.name)}
    if placement.pool:
        labels[POOL_LABEL] = placement.pool
    metadata: Manifest = {"labels": labels}
    if spec.template.metadata.annotations:
        metadata["annotations"] = dict(spec.template.metadata.annotations)
    return {"metadata": metadata, "spec": pod}


def _add_runtime_sidecar(
    pod: dict[str, Any], owner: Owner, spec: EnclaveContainerSpec, runtime: RuntimeSettings
) -> None:
    """The sidecar runtime of an enclave without an image: it attests, then hands the
    secrets to the template's containers through a shared memory volume."""
    if any(secret.file for secret in spec.secrets):
        for container in pod["containers"]:
            container["volumeMounts"] = [
                *(container.get("volumeMounts") or []),
                {"name": SECRETS_VOLUME, "mountPath": SECRETS_MOUNT_PATH, "readOnly": True},
            ]
    pod["initContainers"] = [
        runtime_container(owner.name, owner.namespace, spec, runtime),
        *(pod.get("initContainers") or []),
    ]
    pod["volumes"] = [*(pod.get("volumes") or []), *runtime_volumes(spec)]


def spec_hash(deployment_spec: Manifest) -> str:
    """A short, stable digest of a Deployment spec, to skip applying what is applied."""
    canonical = json.dumps(deployment_spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def owner_reference(owner: Owner) -> Manifest:
    """The controller reference of what the operator creates for an EnclaveContainer:
    the garbage collector deletes it with the EnclaveContainer."""
    return {
        "apiVersion": API_VERSION,
        "kind": "EnclaveContainer",
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def build_deployment(
    owner: Owner, spec: EnclaveContainerSpec, placement: Placement, runtime: RuntimeSettings
) -> Manifest:
    """The Deployment to apply (server-side) for an EnclaveContainer."""
    deployment_spec: Manifest = {
        "replicas": spec.replicas,
        "selector": {"matchLabels": selector_labels(owner.name)},
        # EPC is scarce: with no headroom a surge pod could never schedule, so an update
        # may also take one old replica down first.
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1},
        },
        "revisionHistoryLimit": 3,
        "template": pod_template(owner, spec, placement, runtime),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": owner.name,
            "namespace": owner.namespace,
            "labels": {**selector_labels(owner.name), MANAGED_BY_LABEL: "kubetee"},
            "annotations": {SPEC_HASH_ANNOTATION: spec_hash(deployment_spec)},
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": deployment_spec,
    }
