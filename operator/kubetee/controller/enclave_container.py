"""The pod's enclave container: the enclave runtime as entry point, the workload inside.

With ``spec.enclave.image`` (made by ``kubetee enclave build --image``) or
``spec.enclave.bundle`` (a ConfigMap made by ``kubetee enclave bundle``, run by the
KubeTEE image), the replica's workload runs inside the enclave: the container's command
is ``kubetee enclave run``, which checks the SIGSTRUCT and every trusted file, attests,
and only then starts the workload as its child with the secrets in its environment and
in a directory of its private, memory-backed volume. That volume is mounted into this
container only; no other container of the pod gets a secret (the API refuses templates
that mount the runtime's volumes or share the process namespace).

The container holds the replica's EPC; its startup and readiness probes pass once it
attested, and the ``kubetee.io/attested`` readiness gate, the metrics endpoint and
re-attestation requests work as with the sidecar runtime.
"""

from __future__ import annotations

from typing import Any

from kubetee.api.v1alpha1 import EnclaveContainerSpec
from kubetee.controller.sidecar import (
    PODINFO_MOUNT_PATH,
    PODINFO_VOLUME,
    RESTRICTED_SECURITY_CONTEXT,
    RuntimeSettings,
    epc_resources,
    podinfo_volume,
    runtime_env,
    startup_probe,
)

ENCLAVE_CONTAINER = "kubetee-enclave"
# What an enclave image holds (enclave_runtime.enclave.image writes it there).
IMAGE_ENCLAVE_DIR = "/kubetee/enclave"
IMAGE_ENCLAVE_ROOT = "/kubetee/enclave/root"
PRIVATE_VOLUME = "kubetee-enclave-private"
PRIVATE_MOUNT_PATH = "/run/kubetee/enclave"
BUNDLE_VOLUME = "kubetee-enclave-bundle"
BUNDLE_MOUNT_PATH = "/run/kubetee/enclave-bundle"
ENV_PRIVATE_DIR = "KUBETEE_ENCLAVE_PRIVATE_DIR"
ENV_STATE_DIR = "KUBETEE_STATE_DIR"


def run_command(spec: EnclaveContainerSpec) -> list[str]:
    if spec.enclave.bundle is not None:
        return ["kubetee", "enclave", "run", "--bundle", BUNDLE_MOUNT_PATH]
    return ["kubetee", "enclave", "run", "--dir", IMAGE_ENCLAVE_DIR, "--root", IMAGE_ENCLAVE_ROOT]


def readiness_probe() -> dict[str, Any]:
    """Ready while attested: a refused re-attestation withdraws the marker.

    Two failures in a row, not one: a probe that only timed out on a busy node must not
    take an attested replica out of its Service (the marker is gone within 20 s anyway).
    """
    return {
        "exec": {"command": ["kubetee", "runtime", "probe", "--attested"]},
        "periodSeconds": 10,
        "failureThreshold": 2,
        "timeoutSeconds": 5,
    }


def enclave_container(
    name: str, namespace: str, spec: EnclaveContainerSpec, settings: RuntimeSettings
) -> dict[str, Any]:
    """The container running the enclave (runtime and workload) and holding its EPC."""
    env = runtime_env(name, namespace, spec, settings)
    env.append({"name": ENV_PRIVATE_DIR, "value": PRIVATE_MOUNT_PATH})
    env.append({"name": ENV_STATE_DIR, "value": PRIVATE_MOUNT_PATH})
    mounts: list[dict[str, Any]] = [
        {"name": PRIVATE_VOLUME, "mountPath": PRIVATE_MOUNT_PATH},
        {"name": PODINFO_VOLUME, "mountPath": PODINFO_MOUNT_PATH, "readOnly": True},
    ]
    if spec.enclave.bundle is not None:
        mounts.append({"name": BUNDLE_VOLUME, "mountPath": BUNDLE_MOUNT_PATH, "readOnly": True})
    return {
        "name": ENCLAVE_CONTAINER,
        "image": spec.enclave.image or settings.image,
        "command": run_command(spec),
        "env": env,
        "resources": epc_resources(spec),
        "startupProbe": startup_probe(),
        "readinessProbe": readiness_probe(),
        "volumeMounts": mounts,
        "securityContext": dict(RESTRICTED_SECURITY_CONTEXT),
    }


def enclave_volumes(spec: EnclaveContainerSpec) -> list[dict[str, Any]]:
    """The private memory volume, the pod's annotations, and the bundle if any."""
    volumes: list[dict[str, Any]] = [
        {"name": PRIVATE_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        podinfo_volume(),
    ]
    if spec.enclave.bundle is not None:
        volumes.append(
            {
                "name": BUNDLE_VOLUME,
                "configMap": {"name": spec.enclave.bundle.name, "defaultMode": 0o444},
            }
        )
    return volumes
