"""EPC accounting per node: allocated is the sum of bound, live pods' requests."""

from __future__ import annotations

from kubetee.controller import accounting
from kubetee.controller.views import PodView, node_view, pod_view
from tests.unit.controller.builders import node, pod


def _pods(*bodies: dict[str, object]) -> dict[str, list[PodView]]:
    by_node: dict[str, list[PodView]] = {}
    for body in bodies:
        view = pod_view(body)  # type: ignore[arg-type]
        by_node.setdefault(view.node, []).append(view)
    return by_node


def test_allocated_counts_live_bound_pods_only() -> None:
    pods = _pods(
        pod("a", node_name="n1", epc=64),
        pod("b", node_name="n1", epc=32),
        pod("done", node_name="n1", epc=64, phase="Succeeded"),
        pod("pending", epc=64),
    )
    (account,) = accounting.account([node_view(node("n1"))], lambda n: pods.get(n, []))
    assert (account.allocated_mib, account.enclaves, account.free_mib) == (96, 2, 32)


def test_not_ready_or_cordoned_nodes_offer_nothing() -> None:
    accounts = accounting.account(
        [node_view(node("n1", ready=False)), node_view(node("n2", unschedulable=True))],
        lambda n: [],
    )
    assert [a.free_mib for a in accounts] == [0, 0]


def test_free_epc_totals_and_largest_block() -> None:
    pods = _pods(pod("a", node_name="n1", epc=100), pod("b", node_name="n2", epc=64))
    nodes = [node_view(node(name)) for name in ("n1", "n2", "n3")]
    free = accounting.free_epc(accounting.account(nodes, lambda n: pods.get(n, [])))
    assert free == accounting.FreeEPC(
        total_mib=28 + 64 + 128, largest_mib=128, nodes=3, ready_nodes=3
    )


def test_select_nodes_by_labels_or_by_epc() -> None:
    nodes = [
        node_view(node("b", labels={"pool": "x"})),
        node_view(node("a", labels={"pool": "x"})),
        node_view(node("c", epc=0)),
    ]
    assert [n.name for n in accounting.select_nodes(nodes, {"pool": "x"})] == ["a", "b"]
    assert [n.name for n in accounting.select_nodes(nodes, None)] == ["a", "b"]
