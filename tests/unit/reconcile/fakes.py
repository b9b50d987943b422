"""A Writer that records what the reconcilers would write, and caches from plain dicts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kubetee.controller.views import (
    DeploymentView,
    DisruptionBudgetView,
    NodeView,
    PodView,
    ResourceView,
    node_view,
    pod_view,
    resource_view,
)
from kubetee.k8s.errors import ApiRefusedError
from kubetee.k8s.writes import ObjectRef
from kubetee.reconcile.caches import Caches, ObjectKey


@dataclass
class RecordingWriter:
    """Records each write; ``refuse_deployments`` makes applies fail as a 422 would."""

    deployments: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    events: list[tuple[str, str, str, str]] = field(default_factory=list)
    quotas: list[dict[str, Any]] = field(default_factory=list)
    budgets: list[dict[str, Any]] = field(default_factory=list)
    deleted_budgets: list[tuple[str, str]] = field(default_factory=list)
    refuse_deployments: str = ""

    async def apply_deployment(self, manifest: dict[str, Any]) -> None:
        if self.refuse_deployments:
            raise ApiRefusedError(self.refuse_deployments, 422)
        self.deployments.append(manifest)

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        self.statuses.append((plural, namespace, name, status))

    async def post_event(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        self.events.append((ref.name, type_, reason, message))

    async def apply_quota(self, manifest: dict[str, Any]) -> None:
        self.quotas.append(manifest)

    async def apply_disruption_budget(self, manifest: dict[str, Any]) -> None:
        self.budgets.append(manifest)

    async def delete_disruption_budget(self, namespace: str, name: str) -> None:
        self.deleted_budgets.append((namespace, name))

    async def delete_stale_quotas(
        self, label_selector: str, name: str, keep: set[str]
    ) -> list[str]:
        return []

    def reasons(self) -> list[str]:
        return [reason for _, _, reason, _ in self.events]


@dataclass
class Cluster:
    """Plain-dict stand-ins for kopf's indexes, filled from raw objects."""

    enclave_containers: dict[ObjectKey, list[ResourceView]] = field(default_factory=dict)
    replicas: dict[ObjectKey, list[PodView]] = field(default_factory=dict)
    deployments: dict[ObjectKey, list[DeploymentView]] = field(default_factory=dict)
    pools: dict[str, list[ResourceView]] = field(default_factory=dict)
    nodes: dict[str, list[NodeView]] = field(default_factory=dict)
    pods_by_node: dict[str, list[PodView]] = field(default_factory=dict)
    disruption_budgets: dict[ObjectKey, list[DisruptionBudgetView]] = field(default_factory=dict)
    namespaces: dict[str, list[str]] = field(
        default_factory=lambda: {"ns": ["Active"], "team": ["Active"]}
    )

    def caches(self) -> Caches:
        return Caches(
            self.enclave_containers,
            self.replicas,
            self.deployments,
            self.pools,
            self.nodes,
            self.pods_by_node,
            self.disruption_budgets,
            self.namespaces,
        )

    def add_ec(self, name: str, spec: dict[str, Any], generation: int = 1) -> None:
        body = {
            "metadata": {
                "name": name,
                "namespace": "ns",
                "uid": f"uid-{name}",
                "generation": generation,
            },
            "spec": spec,
        }
        self.enclave_containers[("ns", name)] = [resource_view(body)]

    def add_pool(self, name: str, spec: dict[str, Any], generation: int = 1) -> None:
        body = {
            "metadata": {"name": name, "uid": f"uid-{name}", "generation": generation},
            "spec": spec,
        }
        self.pools[name] = [resource_view(body)]

    def add_nodes(self, bodies: Iterable[dict[str, Any]]) -> None:
        for body in bodies:
            view = node_view(body)
            self.nodes[view.name] = [view]

    def add_pods(self, bodies: Iterable[dict[str, Any]]) -> None:
        for body in bodies:
            view = pod_view(body)
            if view.enclave_container:
                key = (view.namespace, view.enclave_container)
                self.replicas.setdefault(key, []).append(view)
            if view.holds_epc:
                self.pods_by_node.setdefault(view.node, []).append(view)
