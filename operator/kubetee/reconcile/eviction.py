"""One eviction request (the Eviction API, so PodDisruptionBudgets hold) and what its
answer means: the attestation upkeep and TCB recovery replace replicas with it, and the
upkeep removes replicas a kubelet refused (for a finished pod an eviction is a deletion).
"""

from __future__ import annotations

from typing import Any

from kubernetes.aio import client

from kubetee.controller.replacement import EvictionOutcome, eviction_outcome
from kubetee.k8s.writes import REQUESTS


async def request_eviction(
    core: Any, namespace: str, name: str
) -> tuple[EvictionOutcome, int | None]:
    """Ask the apiserver to evict pod ``namespace/name``: the outcome, and the HTTP status
    of a refusal (None when the eviction was created)."""
    REQUESTS.labels("create", "pods/eviction").inc()
    try:
        await core.create_namespaced_pod_eviction(
            name,
            namespace,
            client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=namespace)),
        )
    except client.ApiException as error:
        return eviction_outcome(error.status), error.status
    return EvictionOutcome.EVICTED, None
