"""Raw Kubernetes objects for the controller tests, as the apiserver would send them."""

from __future__ import annotations

from typing import Any

from kubetee.controller.names import ATTESTED_CONDITION, EC_LABEL


def node(
    name: str,
    epc: int = 128,
    *,
    ready: bool = True,
    labels: dict[str, str] | None = None,
    unschedulable: bool = False,
) -> dict[str, Any]:
    resources = {"cpu": "32", "kubetee.io/epc": str(epc), "kubetee.io/enclave": "16"}
    return {
        "metadata": {"name": name, "labels": {"kubetee.io/sgx": "true", **(labels or {})}},
        "spec": {"unschedulable": unschedulable},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def pod(
    name: str,
    *,
    node_name: str = "",
    epc: int = 64,
    ec: str = "demo",
    namespace: str = "demo",
    phase: str = "Running",
    ready: bool = False,
    attested: bool = False,
    unschedulable: str = "",
    deleting: bool = False,
) -> dict[str, Any]:
    conditions: list[dict[str, Any]] = [
        {"type": "Ready", "status": str(ready)},
        {"type": ATTESTED_CONDITION, "status": str(attested)},
    ]
    if unschedulable:
        conditions.append(
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": unschedulable,
            }
        )
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {EC_LABEL: ec} if ec else {},
    }
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    sidecar = {
        "name": "kubetee-runtime",
        "restartPolicy": "Always",
        "resources": {"limits": {"kubetee.io/epc": str(epc), "kubetee.io/enclave": "1"}},
    }
    return {
        "metadata": metadata,
        "spec": {
            "nodeName": node_name or None,
            "initContainers": [sidecar] if epc else [],
            "containers": [{"name": "app", "resources": {"requests": {"cpu": "10m"}}}],
        },
        "status": {"phase": phase, "conditions": conditions},
    }


INSUFFICIENT_EPC = (
    "0/3 nodes are available: 3 Insufficient kubetee.io/epc. preemption: 0/3 nodes are "
    "available: 3 No preemption victims found for incoming pod."
)


# A pinned MRSIGNER: every EnclaveContainer's policy pins its enclave.
SIGNER = "5e" * 32


def ec_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": 3,
        "epc": "64Mi",
        "poolRef": {"name": "sgx"},
        "template": {
            "metadata": {"labels": {"app": "demo"}},
            "spec": {"containers": [{"name": "app", "image": "busybox", "args": ["sleep"]}]},
        },
        "attestation": {"policy": {"mrsigner": [SIGNER]}},
    }
    spec.update(overrides)
    return spec


def pool_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "nodeSelector": {"kubetee.io/sgx": "true"},
        "epcPerNode": "128Mi",
        "strategy": "BinPack",
    }
    spec.update(overrides)
    return spec
