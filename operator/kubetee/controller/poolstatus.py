"""Status of an EPCPool: per-node EPC, totals, and whether every node serves EPC."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from kubetee.api.quantity import format_mebibytes
from kubetee.api.v1alpha1 import EPCPoolStatus, NodeEPC, PoolTotals
from kubetee.controller.accounting import NodeAccount
from kubetee.controller.conditions import Observed, merge_conditions
from kubetee.tcb.names import TCB_STATUS_LABEL

READY = "Ready"
NODES_READY = "NodesReady"
EPC_AVAILABLE = "EPCAvailable"

WARNING_REASONS = frozenset({"NoNodes", "NodeNotReady", "NodeLostEPC"})

# Node names listed in a condition message before "and N more".
_LISTED = 5


def _names(accounts: Sequence[NodeAccount]) -> str:
    names = [a.node.name for a in accounts]
    listed = ", ".join(names[:_LISTED])
    return listed if len(names) <= _LISTED else f"{listed} and {len(names) - _LISTED} more"


def _conditions(accounts: Sequence[NodeAccount]) -> list[Observed]:
    if not accounts:
        message = "no node matches spec.nodeSelector"
        return [
            Observed(NODES_READY, "False", "NoNodes", message),
            Observed(EPC_AVAILABLE, "False", "NoNodes", message),
            Observed(READY, "False", "NoNodes", message),
        ]
    not_ready = [a for a in accounts if not a.node.ready]
    without_epc = [a for a in accounts if a.node.ready and a.node.allocatable_mib == 0]
    total = len(accounts)
    nodes_ready = (
        Observed(
            NODES_READY,
            "False",
            "NodeNotReady",
            f"{len(not_ready)} of {total} nodes not ready: {_names(not_ready)}",
        )
        if not_ready
        else Observed(NODES_READY, "True", "AllNodesReady", f"{total} of {total} nodes ready")
    )
    epc = (
        Observed(
            EPC_AVAILABLE,
            "False",
            "NodeLostEPC",
            f"{len(without_epc)} ready nodes advertise no kubetee.io/epc: "
            f"{_names(without_epc)} (is the device plugin running there?)",
        )
        if without_epc
        else Observed(EPC_AVAILABLE, "True", "EPCAdvertised", "every ready node advertises EPC")
    )
    failing = next((c for c in (nodes_ready, epc) if c.status != "True"), None)
    ready = (
        Observed(READY, "False", failing.reason, failing.message)
        if failing is not None
        else Observed(READY, "True", "PoolReady", f"{total} nodes serve EPC")
    )
    return [nodes_ready, epc, ready]


def compute_pool_status(
    accounts: Sequence[NodeAccount],
    generation: int,
    previous: EPCPoolStatus,
    now: datetime,
) -> EPCPoolStatus:
    """The status to store for a pool whose nodes are ``accounts``."""
    nodes = [
        NodeEPC(
            name=a.node.name,
            ready=a.node.ready,
            capacity=format_mebibytes(a.node.capacity_mib),
            allocatable=format_mebibytes(a.node.allocatable_mib),
            allocated=format_mebibytes(a.allocated_mib),
            enclaves=a.enclaves,
            tcb_status=a.node.labels.get(TCB_STATUS_LABEL, ""),
        )
        for a in accounts
    ]
    judged = Counter(a.node.labels.get(TCB_STATUS_LABEL) for a in accounts)
    totals = PoolTotals(
        nodes=len(accounts),
        ready_nodes=sum(1 for a in accounts if a.node.ready),
        capacity=format_mebibytes(sum(a.node.capacity_mib for a in accounts)),
        allocatable=format_mebibytes(sum(a.node.allocatable_mib for a in accounts)),
        allocated=format_mebibytes(sum(a.allocated_mib for a in accounts)),
        free=format_mebibytes(sum(a.free_mib for a in accounts)),
        enclaves=sum(a.enclaves for a in accounts),
    )
    return EPCPoolStatus(
        observed_generation=generation,
        nodes=nodes,
        totals=totals,
        tcb_statuses={
            status or "Unknown": count for status, count in sorted(judged.items(), key=str)
        }
        if any(judged)
        else {},
        conditions=merge_conditions(previous.conditions, _conditions(accounts), generation, now),
    )
