"""Names on the wire: labels, annotations, extended resources, condition types."""

from __future__ import annotations

from typing import Final

from kubetee.api.v1alpha1 import API_VERSION, GROUP
from kubetee.deviceplugin.constants import ENCLAVE_RESOURCE, EPC_RESOURCE

__all__ = [
    "API_VERSION",
    "ATTESTED_CLAIMS_ANNOTATION",
    "ATTESTED_CONDITION",
    "EC_LABEL",
    "ENCLAVE_RESOURCE",
    "EPC_RESOURCE",
    "FIELD_MANAGER",
    "GROUP",
    "MANAGED_BY_LABEL",
    "POOL_LABEL",
    "RUNTIME_CONTAINER",
    "SPEC_HASH_ANNOTATION",
]

# On the Deployment and pods of an EnclaveContainer: its name (the pods' selector).
EC_LABEL: Final = f"{GROUP}/enclave-container"
# On pods and ResourceQuotas: the EPCPool they belong to.
POOL_LABEL: Final = f"{GROUP}/pool"
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
# Hash of the Deployment spec the operator last applied, to skip no-op applies.
SPEC_HASH_ANNOTATION: Final = f"{GROUP}/spec-hash"
# Pod condition set once the replica's enclave passed attestation (a readiness gate).
ATTESTED_CONDITION: Final = f"{GROUP}/attested"
# What the attestation service established when it attested a pod (JSON: mrenclave,
# mrsigner, isvProdId, isvSvn, ...); the status reports the identities replicas proved.
ATTESTED_CLAIMS_ANNOTATION: Final = f"{GROUP}/attested-claims"
RUNTIME_CONTAINER: Final = "kubetee-runtime"
FIELD_MANAGER: Final = "kubetee-operator"

EC_PLURAL: Final = "enclavecontainers"
POOL_PLURAL: Final = "epcpools"
