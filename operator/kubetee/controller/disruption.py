"""The PodDisruptionBudget an EnclaveContainer asks for with ``spec.disruption``.

Named like the EnclaveContainer, selecting its replicas, owned by it (deleted with it).
Evictions, whether a node drain's or the operator's own replacements after a policy
change, then never take more than ``maxUnavailable`` replicas down at once.
"""

from __future__ import annotations

from typing import Any

from kubetee.api.v1alpha1 import EnclaveContainerSpec
from kubetee.controller.deployment import Owner, owner_reference, selector_labels, spec_hash
from kubetee.controller.names import MANAGED_BY_LABEL, SPEC_HASH_ANNOTATION

Manifest = dict[str, Any]


def build_disruption_budget(owner: Owner, spec: EnclaveContainerSpec) -> Manifest | None:
    """The PodDisruptionBudget to apply (server-side), None if the spec asks for none."""
    if spec.disruption is None:
        return None
    budget_spec: Manifest = {
        "maxUnavailable": spec.disruption.max_unavailable,
        "selector": {"matchLabels": selector_labels(owner.name)},
        # A replica that never became Ready (unattested) may always be evicted: keeping
        # it protects nothing and would block a drain.
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": owner.name,
            "namespace": owner.namespace,
            "labels": {**selector_labels(owner.name), MANAGED_BY_LABEL: "kubetee"},
            "annotations": {SPEC_HASH_ANNOTATION: spec_hash(budget_spec)},
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": budget_spec,
    }
