"""EPCPool status: per-node EPC, totals, and conditions naming the nodes at fault."""

from __future__ import annotations

from datetime import UTC, datetime

from kubetee.api.v1alpha1 import EPCPoolStatus
from kubetee.controller import accounting
from kubetee.controller.poolstatus import compute_pool_status
from kubetee.controller.views import node_view, pod_view
from tests.unit.controller.builders import node, pod

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _status(nodes: list[dict[str, object]], pods: list[dict[str, object]]) -> EPCPoolStatus:
    views = [pod_view(p) for p in pods]  # type: ignore[arg-type]
    accounts = accounting.account(
        [node_view(n) for n in nodes],  # type: ignore[arg-type]
        lambda name: [v for v in views if v.node == name],
    )
    return compute_pool_status(accounts, 2, EPCPoolStatus(), NOW)


def test_nodes_and_totals() -> None:
    status = _status(
        [node("n1"), node("n2")],
        [pod("a", node_name="n1"), pod("b", node_name="n1"), pod("c", node_name="n2")],
    )
    assert [(n.name, n.allocated, n.enclaves) for n in status.nodes] == [
        ("n1", "128Mi", 2),
        ("n2", "64Mi", 1),
    ]
    totals = status.totals
    assert (totals.nodes, totals.ready_nodes, totals.capacity, totals.allocated, totals.free) == (
        2,
        2,
        "256Mi",
        "192Mi",
        "64Mi",
    )
    assert totals.enclaves == 3
    assert {c.type: c.status for c in status.conditions} == {
        "NodesReady": "True",
        "EPCAvailable": "True",
        "NodesShared": "False",
        "Ready": "True",
    }


def test_not_ready_node_is_named() -> None:
    status = _status([node("n1"), node("n2", ready=False)], [])
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "NodeNotReady")
    assert "n2" in ready.message
    assert "n1" not in ready.message
    assert status.totals.free == "128Mi"


def test_node_that_lost_its_epc_is_named() -> None:
    status = _status([node("n1"), node("n2", epc=0)], [])
    epc = next(c for c in status.conditions if c.type == "EPCAvailable")
    assert (epc.status, epc.reason) == ("False", "NodeLostEPC")
    assert "n2" in epc.message


def test_empty_pool() -> None:
    status = _status([], [])
    assert {c.reason for c in status.conditions} == {"NoNodes", "NoSharedNodes"}
