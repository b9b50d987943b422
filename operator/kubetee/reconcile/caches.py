"""What the operator knows of the cluster: kopf's indexes, read through one object.

kopf keeps each index current from its watch streams; the reconcilers only read them,
so deciding about one EnclaveContainer costs no API request. Unit tests build the same
object from plain dicts of lists.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from kubetee.controller.views import (
    DeploymentView,
    DisruptionBudgetView,
    NodeView,
    PodView,
    ResourceView,
)

K = TypeVar("K")
V = TypeVar("V")

# (namespace, name) of a namespaced object.
ObjectKey = tuple[str, str]


def one(index: Mapping[K, Collection[V]], key: K) -> V | None:
    """The single value under ``key`` (indexes keyed by identity hold at most one)."""
    values = index.get(key)
    if not values:
        return None
    return next(iter(values))


@dataclass(frozen=True)
class Caches:
    """Read-only views of the watched objects, by the keys the reconcilers look up."""

    enclave_containers: Mapping[ObjectKey, Collection[ResourceView]]
    replicas: Mapping[ObjectKey, Collection[PodView]]
    deployments: Mapping[ObjectKey, Collection[DeploymentView]]
    pools: Mapping[str, Collection[ResourceView]]
    nodes: Mapping[str, Collection[NodeView]]
    pods_by_node: Mapping[str, Collection[PodView]]
    disruption_budgets: Mapping[ObjectKey, Collection[DisruptionBudgetView]] = field(
        default_factory=dict
    )
    # Namespace name -> its phase (Active, Terminating): where quotas can be applied.
    namespaces: Mapping[str, Collection[str]] = field(default_factory=dict)

    def all_nodes(self) -> Iterable[NodeView]:
        for values in self.nodes.values():
            yield from values

    def pods_on(self, node: str) -> Iterable[PodView]:
        return self.pods_by_node.get(node, ())

    def all_enclave_containers(self) -> Iterable[ResourceView]:
        for values in self.enclave_containers.values():
            yield from values
