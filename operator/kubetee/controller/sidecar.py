"""The enclave runtime of each replica, run as a native sidecar.

It is an init container with ``restartPolicy: Always``: the kubelet starts it before the
workload's containers, waits for its startup probe, and keeps it running beside them.
The runtime holds the replica's EPC (the ``kubetee.io/epc`` request is on it), launches
the simulated enclave, attests it and delivers the secrets; the startup probe passing
is what lets the workload start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kubetee.api.quantity import parse_mebibytes
from kubetee.api.v1alpha1 import EnclaveContainerSpec
from kubetee.api.v1alpha1.enclavecontainer import SECRETS_MOUNT_PATH
from kubetee.controller.names import ENCLAVE_RESOURCE, EPC_RESOURCE, RUNTIME_CONTAINER

SECRETS_VOLUME = "kubetee-secrets"
ENCLAVE_FILES_VOLUME = "kubetee-enclave-files"
ENCLAVE_FILES_MOUNT_PATH = "/run/kubetee/enclave-files"
# Environment of the runtime: the enclave's settings as one JSON document.
ENV_ENCLAVE_CONFIG = "KUBETEE_ENCLAVE_CONFIG"
ENV_ATTESTATION_URL = "KUBETEE_ATTESTATION_URL"
# Attestation hook: the service's CA inline (public; no cross-namespace ConfigMap
# needed) and the pod's annotations through the downward API, where the runtime sees
# re-attestation requests (kubetee.io/reattest-requested).
ENV_ATTESTATION_CA_PEM = "KUBETEE_ATTESTATION_CA_PEM"
ENV_PODINFO_DIR = "KUBETEE_PODINFO_DIR"
PODINFO_VOLUME = "kubetee-podinfo"
PODINFO_MOUNT_PATH = "/run/kubetee/podinfo"


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """What the operator's deployment decides about every runtime sidecar."""

    image: str
    attestation_url: str | None = None
    attestation_ca_pem: str | None = None
    # Place replicas only on nodes whose TCB status label the policy accepts (on when
    # the operator judges nodes' TCB: kubetee.tcb).
    tcb_placement: bool = False


def enclave_config(name: str, namespace: str, spec: EnclaveContainerSpec) -> dict[str, Any]:
    """The runtime's view of the enclave: launch settings, measured files, secrets.

    Secret values are never here, only where each one goes; the runtime receives them
    from the attestation service once its quote is accepted.
    """
    enclave = spec.enclave
    files = []
    for item in enclave.files:
        if item.content is not None:
            files.append({"path": item.path, "content": item.content})
        else:
            files.append(
                {"path": item.path, "mountedAt": f"{ENCLAVE_FILES_MOUNT_PATH}/{item.path}"}
            )
    return {
        "enclaveContainer": {"namespace": namespace, "name": name},
        "epcMiB": spec.epc_mebibytes,
        "debug": enclave.debug,
        "heapMiB": parse_mebibytes(enclave.heap_size) if enclave.heap_size else None,
        "threads": enclave.threads,
        "isvProdId": enclave.isv_prod_id,
        "isvSvn": enclave.isv_svn,
        "files": files,
        "secrets": [
            {"name": s.name, "file": s.file} if s.file else {"name": s.name, "env": s.env}
            for s in spec.secrets
        ],
        "secretsDir": SECRETS_MOUNT_PATH,
    }


def startup_probe() -> dict[str, Any]:
    """Gate on the enclave being attested (the attestation component defines the check).

    Until it passes the workload's containers do not start; the budget allows a slow
    first attestation (collateral fetch) without restarting the runtime.
    """
    return {
        "exec": {"command": ["kubetee", "runtime", "probe", "--attested"]},
        "periodSeconds": 2,
        "failureThreshold": 150,
        "timeoutSeconds": 5,
    }


def runtime_env(
    name: str, namespace: str, spec: EnclaveContainerSpec, settings: RuntimeSettings
) -> list[dict[str, Any]]:
    """The runtime's environment: the pod's identity, the enclave's config, attestation."""
    env: list[dict[str, Any]] = [
        {"name": "KUBETEE_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "KUBETEE_POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        {"name": "KUBETEE_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {
            "name": ENV_ENCLAVE_CONFIG,
            "value": json.dumps(enclave_config(name, namespace, spec), sort_keys=True),
        },
    ]
    if settings.attestation_url:
        env.append({"name": ENV_ATTESTATION_URL, "value": settings.attestation_url})
    if settings.attestation_ca_pem:
        env.append({"name": ENV_ATTESTATION_CA_PEM, "value": settings.attestation_ca_pem})
    env.append({"name": ENV_PODINFO_DIR, "value": PODINFO_MOUNT_PATH})
    return env


def epc_resources(spec: EnclaveContainerSpec) -> dict[str, Any]:
    """The replica's EPC and one enclave, requested by the container that runs it."""
    epc = str(spec.epc_mebibytes)
    return {
        "requests": {EPC_RESOURCE: epc, ENCLAVE_RESOURCE: "1"},
        "limits": {EPC_RESOURCE: epc, ENCLAVE_RESOURCE: "1"},
    }


RESTRICTED_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def podinfo_volume() -> dict[str, Any]:
    """The pod's annotations (re-attestation requests) through the downward API."""
    return {
        "name": PODINFO_VOLUME,
        "downwardAPI": {
            "items": [{"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}]
        },
    }


def runtime_container(
    name: str, namespace: str, spec: EnclaveContainerSpec, settings: RuntimeSettings
) -> dict[str, Any]:
    """The native sidecar running the replica's enclave and holding its EPC."""
    env = runtime_env(name, namespace, spec, settings)
    mounts: list[dict[str, Any]] = [
        {"name": SECRETS_VOLUME, "mountPath": SECRETS_MOUNT_PATH},
        {"name": PODINFO_VOLUME, "mountPath": PODINFO_MOUNT_PATH, "readOnly": True},
    ]
    if any(f.config_map_key_ref is not None for f in spec.enclave.files):
        mounts.append(
            {"name": ENCLAVE_FILES_VOLUME, "mountPath": ENCLAVE_FILES_MOUNT_PATH, "readOnly": True}
        )
    return {
        "name": RUNTIME_CONTAINER,
        "image": settings.image,
        "command": ["kubetee", "runtime"],
        "restartPolicy": "Always",
        "env": env,
        "resources": epc_resources(spec),
        "startupProbe": startup_probe(),
        "volumeMounts": mounts,
        "securityContext": dict(RESTRICTED_SECURITY_CONTEXT),
    }


def runtime_volumes(spec: EnclaveContainerSpec) -> list[dict[str, Any]]:
    """Volumes the runtime needs: the memory-backed secrets volume, the measured files."""
    volumes: list[dict[str, Any]] = [
        {"name": SECRETS_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
        podinfo_volume(),
    ]
    sources = [
        {
            "configMap": {
                "name": item.config_map_key_ref.name,
                "items": [{"key": item.config_map_key_ref.key, "path": item.path}],
            }
        }
        for item in spec.enclave.files
        if item.config_map_key_ref is not None
    ]
    if sources:
        volumes.append({"name": ENCLAVE_FILES_VOLUME, "projected": {"sources": sources}})
    return volumes
