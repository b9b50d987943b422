"""What the operator knows of the cluster: kopf's indexes, read through one object.

kopf keeps each index current from its watch streams; the reconcilers only read them,
so deciding about one EnclaveContainer costs no API request. Unit tests build the same
object from plain dicts of lists.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from kubetee.controller.views import (
    DeploymentView,
    DisruptionBudgetView,
    NodeView,
    PodView,
    ResourceView,
)

K = TypeVar("K")
V = TypeVar("V")
S = TypeVar("S")

# (namespace, name) of a namespaced object.
ObjectKey = tuple[str, str]


def one(index: Mapping[K, Collection[V]], key: K) -> V | None:
    """The single value under ``key`` (indexes keyed by identity hold at most one)."""
    values = index.get(key)
    if not values:
        return None
    return next(iter(values))


class Projected(Mapping[K, Collection[V]], Generic[K, S, V]):
    """One part of every value of an index, read as an index of its own.

    Several views of one watched object share one kopf index (kopf calls one handler per
    index per watch event, and that call costs more than the views); each reader still
    sees the index of the view it needs.
    """

    def __init__(self, index: Mapping[K, Collection[S]], part: Callable[[S], V]) -> None:
        self._index = index
        self._part = part

    def __getitem__(self, key: K) -> Collection[V]:
        return tuple(self._part(value) for value in self._index[key])

    def __iter__(self) -> Iterator[K]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


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
