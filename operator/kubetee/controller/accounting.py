"""EPC per node: what it advertises, what its pods hold, what is left.

Allocated EPC is the sum of the EPC requests of the non-terminated pods bound to the
node, the same sum the scheduler's NodeResourcesFit checks, so "free" here is what the
scheduler would find.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from kubetee.controller.views import NodeView, PodView


@dataclass(frozen=True, slots=True)
class NodeAccount:
    """EPC of one node."""

    node: NodeView
    allocated_mib: int
    enclaves: int

    @property
    def free_mib(self) -> int:
        """Allocatable EPC not yet allocated, zero when the node takes no new pods."""
        if not self.node.ready or self.node.unschedulable:
            return 0
        return max(self.node.allocatable_mib - self.allocated_mib, 0)


@dataclass(frozen=True, slots=True)
class FreeEPC:
    """How much EPC a new replica could find."""

    total_mib: int
    largest_mib: int
    nodes: int
    ready_nodes: int


def select_nodes(nodes: Iterable[NodeView], selector: Mapping[str, str] | None) -> list[NodeView]:
    """The nodes a pool selects, by name; ``None`` selects nodes advertising EPC."""
    if selector is None:
        chosen = [node for node in nodes if node.capacity_mib > 0]
    else:
        chosen = [node for node in nodes if node.matches(selector)]
    return sorted(chosen, key=lambda node: node.name)


def account(
    nodes: Iterable[NodeView], pods_on: Callable[[str], Iterable[PodView]]
) -> list[NodeAccount]:
    """EPC of each node, with ``pods_on(name)`` giving the pods bound to a node."""
    accounts = []
    for node in nodes:
        holding = [pod for pod in pods_on(node.name) if pod.holds_epc]
        accounts.append(
            NodeAccount(
                node=node,
                allocated_mib=sum(pod.epc_mib for pod in holding),
                enclaves=sum(1 for pod in holding if pod.enclaves > 0),
            )
        )
    return accounts


def free_epc(accounts: Iterable[NodeAccount]) -> FreeEPC:
    """Free EPC summed over the nodes, and the most one replica could get on one node."""
    accounts = list(accounts)
    frees = [a.free_mib for a in accounts]
    return FreeEPC(
        total_mib=sum(frees),
        largest_mib=max(frees, default=0),
        nodes=len(accounts),
        ready_nodes=sum(1 for a in accounts if a.node.ready),
    )
