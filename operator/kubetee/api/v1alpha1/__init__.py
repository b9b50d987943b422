"""Version ``v1alpha1`` of the ``kubetee.io`` API: EnclaveContainer and EPCPool.

kopf has no conversion webhooks, so changes to this version stay additive.
"""

from kubetee.api.v1alpha1.enclavecontainer import (
    AttestationSpec,
    AttestationStatus,
    AttestedEnclave,
    ConfigMapKeyRef,
    DisruptionSpec,
    EnclaveContainerSpec,
    EnclaveContainerStatus,
    EnclaveFile,
    EnclaveSettings,
    EPCStatus,
    PodTemplate,
    PoolReference,
    SecretDelivery,
    SecretKeyRef,
)
from kubetee.api.v1alpha1.epcpool import (
    EPCPoolSpec,
    EPCPoolStatus,
    NamespaceQuota,
    NodeEPC,
    PoolTotals,
    Strategy,
)

GROUP = "kubetee.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "AttestationSpec",
    "AttestationStatus",
    "AttestedEnclave",
    "ConfigMapKeyRef",
    "DisruptionSpec",
    "EPCPoolSpec",
    "EPCPoolStatus",
    "EPCStatus",
    "EnclaveContainerSpec",
    "EnclaveContainerStatus",
    "EnclaveFile",
    "EnclaveSettings",
    "NamespaceQuota",
    "NodeEPC",
    "PodTemplate",
    "PoolReference",
    "PoolTotals",
    "SecretDelivery",
    "SecretKeyRef",
    "Strategy",
]
