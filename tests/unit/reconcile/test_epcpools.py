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


def _condition(writer: RecordingWriter, type_: str) -> tuple[str, str, str]:
    found = next(c for c in writer.statuses[-1][3]["conditions"] if c["type"] == type_)
    return found["status"], found["reason"], found["message"]


async def test_a_quota_namespace_created_later_gets_its_quota_and_is_reported_until_then() -> None:
    cluster, writer, _, reconciler = _setup()
    del cluster.namespaces["team"]
    await reconciler.reconcile("sgx")
    assert writer.quotas == []
    status, reason, message = _condition(writer, "QuotasApplied")
    assert (status, reason) == ("False", "NamespaceNotFound")
    assert "team" in message
    assert _condition(writer, "Ready")[0] == "True"  # nothing to enforce there yet
    assert writer.reasons().count("NamespaceNotFound") == 1

    cluster.namespaces["team"] = ["Active"]  # created: the same generation of the pool
    await reconciler.reconcile("sgx")
    assert [q["metadata"]["namespace"] for q in writer.quotas] == ["team"]
    assert _condition(writer, "QuotasApplied")[:2] == ("True", "QuotasApplied")
    await reconciler.reconcile("sgx")
    assert len(writer.quotas) == 1  # applied once

    # Deleted and created again: applied again.
    del cluster.namespaces["team"]
    await reconciler.reconcile("sgx")
    cluster.namespaces["team"] = ["Active"]
    await reconciler.reconcile("sgx")
    assert len(writer.quotas) == 2


async def test_nodes_advertising_other_than_the_spec_make_the_pool_not_ready() -> None:
    cluster, writer, _, reconciler = _setup()
    cluster.add_pool("sgx", pool_spec(epcPerNode="64Mi"))
    await reconciler.reconcile("sgx")
    status, reason, message = _condition(writer, "NodesMatchSpec")
    assert (status, reason) == ("False", "EPCPerNodeMismatch")
    assert "n1 128Mi" in message
    assert "64Mi" in message
    assert _condition(writer, "Ready")[:2] == ("False", "EPCPerNodeMismatch")
    assert writer.reasons().count("EPCPerNodeMismatch") == 1  # not again for Ready
    (event,) = [e for e in writer.events if e[2] == "EPCPerNodeMismatch"]
    assert event[3] == "node n1, n2 advertises another kubetee.io/epc capacity than " + (
        "spec.epcPerNode 64Mi"
    )

    cluster.add_pool("sgx", pool_spec(epcPerNode="128Mi", maxEnclavesPerNode=8), generation=2)
    await reconciler.reconcile("sgx")
    assert _condition(writer, "NodesMatchSpec")[:2] == ("False", "EnclaveSlotsMismatch")

    cluster.add_pool("sgx", pool_spec(epcPerNode="128Mi", maxEnclavesPerNode=16), generation=3)
    await reconciler.reconcile("sgx")
    assert _condition(writer, "NodesMatchSpec")[:2] == ("True", "NodesMatchSpec")
    assert _condition(writer, "Ready")[0] == "True"


async def test_overlapping_pools_count_a_shared_node_once() -> None:
    cluster, writer, _, reconciler = _setup()
    older = {"metadata": {"name": "sgx", "uid": "u1", "generation": 1}, "spec": pool_spec()}
    older["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    newer = {
        "metadata": {
            "name": "spread",
            "uid": "u2",
            "generation": 1,
            "creationTimestamp": "2026-01-02T00:00:00Z",
        },
        "spec": pool_spec(strategy="Spread"),
    }
    cluster.pools["sgx"] = [resource_view(older)]
    cluster.pools["spread"] = [resource_view(newer)]
    await reconciler.reconcile("sgx")
    await reconciler.reconcile("spread")
    by_pool = {name: status for _, _, name, status in writer.statuses}
    assert by_pool["sgx"]["totals"]["nodes"] == 2
    assert by_pool["sgx"]["totals"]["allocated"] == "64Mi"
    assert by_pool["spread"]["totals"]["nodes"] == 0
    assert by_pool["spread"]["totals"]["sharedNodes"] == 2
    assert by_pool["spread"]["totals"]["allocated"] == "0Mi"
    # Both list the nodes, with the pools they share them with.
    assert [n["sharedWith"] for n in by_pool["spread"]["nodes"]] == [["sgx"], ["sgx"]]
    assert [n["sharedWith"] for n in by_pool["sgx"]["nodes"]] == [["spread"], ["spread"]]
    assert {n["countedIn"] for p in by_pool.values() for n in p["nodes"]} == {"sgx"}
    shared = next(c for c in by_pool["spread"]["conditions"] if c["type"] == "NodesShared")
    assert (shared["status"], shared["reason"]) == ("True", "SharedWithPools")


async def test_a_deleted_node_is_an_event_and_a_condition_while_replicas_are_bound_there() -> None:
    cluster, writer, _, reconciler = _setup()
    cluster.add_pods([pod("m", node_name="n2", ec="member", namespace="ns")])
    await reconciler.reconcile("sgx")
    del cluster.nodes["n2"]
    await reconciler.reconcile("sgx")
    status, reason, message = _condition(writer, "NodesReady")
    assert (status, reason) == ("False", "NodeLost")
    assert "n2" in message
    assert "1 replicas" in message
    assert _condition(writer, "Ready")[:2] == ("False", "NodeLost")
    assert writer.reasons().count("NodeLost") == 1
    assert [n["name"] for n in writer.statuses[-1][3]["nodes"]] == ["n1"]
    (event,) = [e for e in writer.events if e[2] == "NodeLost"]
    assert event[3] == "node n2 was deleted: it left the pool"  # no count to go stale

    del cluster.pods_by_node["n2"]  # the pod garbage collector removed the replica
    await reconciler.reconcile("sgx")
    assert _condition(writer, "NodesReady")[:2] == ("True", "AllNodesReady")
    assert writer.reasons().count("NodeLost") == 1


async def test_pool_events_name_nodes_not_counts() -> None:
    cluster, writer, _, reconciler = _setup()
    await reconciler.reconcile("sgx")
    cluster.add_nodes([node("n1", ready=False)])
    await reconciler.reconcile("sgx")
    (event,) = [e for e in writer.events if e[2] == "NodeNotReady"]
    assert event[1:] == ("Warning", "NodeNotReady", "node n1 not ready")
    assert "1 of 2" in _condition(writer, "NodesReady")[2]  # the count is in the status
