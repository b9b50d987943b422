"""Reconciling an EPCPool: accounting in status, quotas, and requeues of its members."""

from __future__ import annotations

from datetime import UTC, datetime

from kubetee.controller.views import resource_view
from kubetee.reconcile.caches import ObjectKey
from kubetee.reconcile.epcpools import EPCPoolReconciler
from tests.unit.controller.builders import ec_spec, node, pod, pool_spec
from tests.unit.reconcile.fakes import Cluster, RecordingWriter


def _setup() -> tuple[Cluster, RecordingWriter, list[ObjectKey], EPCPoolReconciler]:
    cluster = Cluster()
    cluster.add_pool("sgx", pool_spec(quotas=[{"namespace": "team", "epc": "1Gi"}]))
    cluster.add_nodes([node("n1"), node("n2"), node("other", labels={"kubetee.io/sgx": "no"})])
    cluster.add_pods([pod("a", node_name="n1"), pod("b", node_name="other")])
    cluster.add_ec("member", ec_spec())
    cluster.add_ec("stranger", ec_spec(poolRef={"name": "elsewhere"}))
    writer = RecordingWriter()
    queued: list[ObjectKey] = []
    reconciler = EPCPoolReconciler(
        cluster.caches(), writer, queued.append, clock=lambda: datetime(2026, 1, 1, tzinfo=UTC)
    )
    return cluster, writer, queued, reconciler


async def test_status_accounts_the_selected_nodes_only() -> None:
    _, writer, _, reconciler = _setup()
    await reconciler.reconcile("sgx")
    plural, namespace, name, status = writer.statuses[-1]
    assert (plural, namespace, name) == ("epcpools", "", "sgx")
    assert [(n["name"], n["allocated"]) for n in status["nodes"]] == [
        ("n1", "64Mi"),
        ("n2", "0Mi"),
    ]
    assert status["totals"]["free"] == "192Mi"
    free = reconciler.free("sgx")
    assert free is not None
    assert free.total_mib == 192
    await reconciler.reconcile("sgx")
    assert len(writer.statuses) == 1  # unchanged: no second write


async def test_new_spec_applies_quotas_and_requeues_members() -> None:
    _, writer, queued, reconciler = _setup()
    await reconciler.reconcile("sgx")
    assert queued == [("ns", "member")]
    (quota,) = writer.quotas
    assert quota["metadata"]["namespace"] == "team"
    assert quota["spec"]["hard"] == {"requests.kubetee.io/epc": "1024"}
    assert quota["metadata"]["ownerReferences"][0]["kind"] == "EPCPool"


async def test_free_change_requeues_only_members_waiting_for_epc() -> None:
    cluster, _, queued, reconciler = _setup()
    await reconciler.reconcile("sgx")
    queued.clear()
    waiting = resource_view(
        {
            "metadata": {"name": "member", "namespace": "ns", "uid": "u", "generation": 1},
            "spec": ec_spec(),
            "status": {"conditions": [{"type": "Scheduled", "reason": "InsufficientEPC"}]},
        }
    )
    cluster.add_ec("idle", ec_spec())
    cluster.enclave_containers[("ns", "member")] = [waiting]
    cluster.pods_by_node.clear()  # every replica gone: free EPC changes
    await reconciler.reconcile("sgx")
    assert queued == [("ns", "member")]


async def test_free_change_requeues_a_member_with_a_replica_pending_for_epc() -> None:
    """Its status may not say InsufficientEPC yet (written moments later with the old free
    figure): the pending replica alone makes it follow the pool's free EPC."""
    cluster, _, queued, reconciler = _setup()
    await reconciler.reconcile("sgx")
    queued.clear()
    cluster.add_ec("idle", ec_spec())
    cluster.add_pods([pod("p", ec="member", namespace="ns", unschedulable="Insufficient EPC")])
    cluster.pods_by_node.clear()  # every bound replica gone: free EPC changes
    await reconciler.reconcile("sgx")
    assert queued == [("ns", "member")]


async def test_deleted_pool_requeues_its_members() -> None:
    cluster, _, queued, reconciler = _setup()
    await reconciler.reconcile("sgx")
    queued.clear()
    cluster.pools.clear()
    await reconciler.reconcile("sgx")
    assert queued == [("ns", "member")]
    assert reconciler.free("sgx") is None


async def test_node_going_not_ready_is_a_warning_event() -> None:
    cluster, writer, _, reconciler = _setup()
    await reconciler.reconcile("sgx")
    cluster.add_nodes([node("n2", ready=False)])
    await reconciler.reconcile("sgx")
    assert ("sgx", "Warning", "NodeNotReady") in [e[:3] for e in writer.events]
