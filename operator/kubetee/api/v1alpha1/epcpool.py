"""EPCPool: a group of SGX nodes, their EPC, and how replicas are placed on them.

Cluster-scoped. The status is the operator's accounting of the pool: per node, the EPC
the device plugin advertises and the EPC requested by the pods bound there.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, StringConstraints, model_validator

from kubetee.api.base import ApiModel
from kubetee.api.conditions import CONDITIONS_SCHEMA_EXTRA, Condition
from kubetee.api.quantity import EPCQuantity, EPCQuantityString

Strategy = Literal["BinPack", "Spread"]

# The kube-scheduler profile (deploy/cluster/scheduler-config.yaml) of each strategy.
SCHEDULER_OF_STRATEGY: dict[str, str] = {
    "BinPack": "kubetee-binpack",
    "Spread": "kubetee-spread",
}

NamespaceName = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", min_length=1, max_length=63),
]


class NamespaceQuota(ApiModel):
    """The most EPC the pods of one namespace may request in total."""

    namespace: NamespaceName = Field(description="Namespace the quota applies to.")
    epc: EPCQuantityString = Field(
        description="Total kubetee.io/epc the namespace's pods may request, such as 1Gi. "
        "Enforced by a ResourceQuota the operator keeps in the namespace."
    )


class EPCPoolSpec(ApiModel):
    """Desired state of an EPCPool."""

    node_selector: dict[str, str] = Field(
        default_factory=dict,
        max_length=16,
        description="Labels a node must have to be in the pool, such as "
        "kubetee.io/sgx: 'true'. Empty selects every node.",
    )
    epc_per_node: EPCQuantity | None = Field(
        default=None,
        description="EPC each node of the pool is expected to advertise (kubetee.io/epc "
        "capacity from its device plugin), such as 128Mi. The pool checks it: a node "
        "advertising another amount makes NodesMatchSpec False (EPCPerNodeMismatch). "
        "Unset: not checked.",
    )
    max_enclaves_per_node: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="Enclaves each node of the pool is expected to run at once "
        "(kubetee.io/enclave capacity from its device plugin). A node advertising another "
        "count makes NodesMatchSpec False (EnclaveSlotsMismatch). Unset: not checked.",
    )
    strategy: Strategy = Field(
        default="BinPack",
        description="Placement of replicas: BinPack fills one node before the next "
        "(scheduler profile kubetee-binpack); Spread balances EPC use across nodes "
        "(kubetee-spread).",
    )
    quotas: list[NamespaceQuota] = Field(
        default_factory=list,
        max_length=64,
        description="Optional per-namespace EPC quotas.",
        # A list-map: the apiserver refuses a second quota for a namespace.
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["namespace"],
        },
    )

    @model_validator(mode="after")
    def _unique_quotas(self) -> Self:
        namespaces = [q.namespace for q in self.quotas]
        duplicates = sorted({n for n in namespaces if namespaces.count(n) > 1})
        if duplicates:
            raise ValueError(f"one quota per namespace; repeated: {duplicates}")
        return self

    @property
    def scheduler_name(self) -> str:
        """The kube-scheduler profile that implements the strategy."""
        return SCHEDULER_OF_STRATEGY[self.strategy]


class NodeEPC(ApiModel):
    """EPC of one node of the pool."""

    name: str = Field(description="Name of the node.")
    ready: bool = Field(description="Whether the node is Ready.")
    capacity: str = Field(description="kubetee.io/epc capacity the node advertises.")
    allocatable: str = Field(description="kubetee.io/epc allocatable on the node.")
    allocated: str = Field(
        description="EPC requested by the non-terminated pods bound to the node."
    )
    enclaves: int = Field(ge=0, description="Enclaves (pods with EPC) bound to the node.")
    shared_with: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="Other EPCPools that also select this node. Its EPC is shared, not "
        "split: each pool shows the node's capacity and allocation, and counts the node "
        "in its totals only if it is the oldest of them (see totals.sharedNodes).",
    )
    counted_in: str = Field(
        default="",
        description="The EPCPool whose totals (and metrics) count this node: this pool, "
        "or the oldest other pool that also selects it.",
    )
    tcb_status: str = Field(
        default="",
        description="The node's SGX TCB status under the newest TCB evaluation (its label "
        "kubetee.io/sgx-tcb-status); empty when the operator does not judge TCB.",
    )


class PoolTotals(ApiModel):
    """Sums over the pool's nodes."""

    nodes: int = Field(
        default=0, ge=0, description="Nodes counted by this pool (not counted by an older one)."
    )
    shared_nodes: int = Field(
        default=0,
        ge=0,
        description="Nodes of the pool that an older EPCPool also selects and counts: "
        "listed in nodes, not in these totals, so totals over all pools count each node once.",
    )
    ready_nodes: int = Field(default=0, ge=0, description="Nodes that are Ready.")
    capacity: str = Field(default="0Mi", description="Sum of the nodes' EPC capacity.")
    allocatable: str = Field(default="0Mi", description="Sum of the nodes' allocatable EPC.")
    allocated: str = Field(default="0Mi", description="Sum of the EPC allocated on the nodes.")
    free: str = Field(default="0Mi", description="Allocatable EPC not allocated, on Ready nodes.")
    enclaves: int = Field(default=0, ge=0, description="Enclaves running in the pool.")


class EPCPoolStatus(ApiModel):
    """Observed state of an EPCPool."""

    observed_generation: int = Field(
        default=0, ge=0, description="metadata.generation this status was computed for."
    )
    nodes: list[NodeEPC] = Field(
        default_factory=list,
        max_length=5000,
        description="EPC of each node in the pool, by name.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )
    totals: PoolTotals = Field(default_factory=PoolTotals, description="Sums over the nodes.")
    tcb_statuses: dict[str, int] = Field(
        default_factory=dict,
        description="Nodes by SGX TCB status under the newest TCB evaluation, e.g. "
        "{UpToDate: 2, OutOfDate: 1}; nodes without the label count as Unknown.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        description="Ready, NodesReady, EPCAvailable, NodesMatchSpec, QuotasApplied and "
        "NodesShared, with reasons such as NodeNotReady, NodeLost, NodeLostEPC, "
        "EPCPerNodeMismatch and NamespaceNotFound.",
        json_schema_extra=CONDITIONS_SCHEMA_EXTRA,
    )
