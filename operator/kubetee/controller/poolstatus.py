"""Status of an EPCPool: per-node EPC, totals, and whether every node serves EPC."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime

from kubetee.api.quantity import format_mebibytes
from kubetee.api.v1alpha1 import EPCPoolStatus, NodeEPC, PoolTotals
from kubetee.controller.accounting import NodeAccount
from kubetee.controller.conditions import Observed, merge_conditions
from kubetee.controller.poolfacts import (
    NODES_SHARED,
    PoolFacts,
    counted_in,
    listed,
    shared_condition,
)
from kubetee.tcb.names import TCB_STATUS_LABEL

READY = "Ready"
NODES_READY = "NodesReady"
EPC_AVAILABLE = "EPCAvailable"

WARNING_REASONS = frozenset(
    {
        "NoNodes",
        "NodeNotReady",
        "NodeLost",
        "NodeLostEPC",
        "EPCPerNodeMismatch",
        "EnclaveSlotsMismatch",
        "NamespaceNotFound",
        "QuotaRefused",
    }
)


def _names(accounts: Sequence[NodeAccount]) -> str:
    return listed([a.node.name for a in accounts])


def _lost(lost: Mapping[str, int]) -> Observed:
    names = sorted(lost)
    return Observed(
        NODES_READY,
        "False",
        "NodeLost",
        f"node {listed(names)} no longer exists; {sum(lost.values())} replicas of this pool "
        "bound there are being replaced",
    )


def _conditions(accounts: Sequence[NodeAccount], facts: PoolFacts) -> list[Observed]:
    extra = [c for c in (facts.spec_match, facts.quotas) if c is not None]
    extra.append(shared_condition(facts.shared_with))
    if not accounts:
        message = "no node matches spec.nodeSelector"
        nodes_ready = (
            _lost(facts.lost) if facts.lost else Observed(NODES_READY, "False", "NoNodes", message)
        )
        return [
            nodes_ready,
            Observed(EPC_AVAILABLE, "False", "NoNodes", message),
            *extra,
            Observed(READY, "False", nodes_ready.reason, nodes_ready.message),
        ]
    not_ready = [a for a in accounts if not a.node.ready]
    without_epc = [a for a in accounts if a.node.ready and a.node.allocatable_mib == 0]
    total = len(accounts)
    nodes_ready = (
        _lost(facts.lost)
        if facts.lost
        else Observed(
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
    # A missing namespace is no failure: its quota is applied when it is created.
    blocking = [c for c in (nodes_ready, epc, *extra) if c.type != NODES_SHARED]
    failing = next(
        (c for c in blocking if c.status != "True" and c.reason != "NamespaceNotFound"), None
    )
    ready = (
        Observed(READY, "False", failing.reason, failing.message)
        if failing is not None
        else Observed(READY, "True", "PoolReady", f"{total} nodes serve EPC")
    )
    return [nodes_ready, epc, *extra, ready]


def compute_pool_status(
    accounts: Sequence[NodeAccount],
    generation: int,
    previous: EPCPoolStatus,
    now: datetime,
    facts: PoolFacts | None = None,
) -> EPCPoolStatus:
    """The status to store for a pool whose nodes are ``accounts``; totals count only the
    nodes no older pool counts (``facts.counted_elsewhere``)."""
    facts = facts or PoolFacts()
    nodes = [
        NodeEPC(
            name=a.node.name,
            ready=a.node.ready,
            capacity=format_mebibytes(a.node.capacity_mib),
            allocatable=format_mebibytes(a.node.allocatable_mib),
            allocated=format_mebibytes(a.allocated_mib),
            enclaves=a.enclaves,
            shared_with=list(facts.shared_with.get(a.node.name, ())),
            counted_in=counted_in(facts, a.node.name),
            tcb_status=a.node.labels.get(TCB_STATUS_LABEL, ""),
        )
        for a in accounts
    ]
    mine = [a for a in accounts if a.node.name not in facts.counted_elsewhere]
    judged = Counter(a.node.labels.get(TCB_STATUS_LABEL) for a in accounts)
    totals = PoolTotals(
        nodes=len(mine),
        ready_nodes=sum(1 for a in mine if a.node.ready),
        capacity=format_mebibytes(sum(a.node.capacity_mib for a in mine)),
        allocatable=format_mebibytes(sum(a.node.allocatable_mib for a in mine)),
        allocated=format_mebibytes(sum(a.allocated_mib for a in mine)),
        free=format_mebibytes(sum(a.free_mib for a in mine)),
        enclaves=sum(a.enclaves for a in mine),
        shared_nodes=len(accounts) - len(mine),
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
        conditions=merge_conditions(
            previous.conditions, _conditions(accounts, facts), generation, now
        ),
    )
