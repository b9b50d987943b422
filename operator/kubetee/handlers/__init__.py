"""kopf registration only: indexes, watch-event handlers, startup and cleanup.

Importing this package registers every handler in kopf's default registry. The
handlers turn raw bodies into views (``kubetee.controller.views``) and hand them to
the running ``OperatorRuntime``; all decisions are made there and below.

Modules:
    lifecycle         startup (kopf settings, API client, runtime) and cleanup
    enclavecontainer  EnclaveContainers, their Deployments and budgets
    replicas          their pods, in one index for every reader
    epcpool           EPCPools, nodes, and every pod that holds EPC
    attestation       replicas' attestation upkeep (re-attestation, replacement, expiry)
    tcb               TCB recovery: node TCB labels, replicas moved off refused platforms
"""

from kubetee.handlers import attestation, enclavecontainer, epcpool, lifecycle, replicas, tcb

__all__ = ["attestation", "enclavecontainer", "epcpool", "lifecycle", "replicas", "tcb"]
