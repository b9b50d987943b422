"""The operator's metrics, scraped from a real /metrics endpoint."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from kubetee.api.v1alpha1 import EnclaveContainerStatus, EPCPoolStatus
from kubetee.controller.accounting import NodeAccount
from kubetee.controller.poolfacts import PoolFacts
from kubetee.controller.poolstatus import compute_pool_status
from kubetee.controller.views import NodeView
from kubetee.metrics import names
from kubetee.metrics.operator import OperatorMetrics
from kubetee.metrics.serve import MetricsServer

from .conftest import scrape_url, value

MIB = 1024 * 1024


def _node(name: str, capacity: int, allocatable: int, ready: bool = True) -> NodeView:
    return NodeView(
        name=name,
        labels={},
        ready=ready,
        unschedulable=False,
        capacity_mib=capacity,
        allocatable_mib=allocatable,
        enclave_slots=16,
    )


def _pool_status(*accounts: NodeAccount) -> EPCPoolStatus:
    return compute_pool_status(list(accounts), 1, EPCPoolStatus(), datetime.now(UTC))


def test_pool_accounting_is_exported_per_pool_and_node_in_bytes(
    registry: CollectorRegistry, serve: Callable[[], MetricsServer]
) -> None:
    metrics = OperatorMetrics(registry)
    metrics.record_pool(
        "sgx",
        _pool_status(
            NodeAccount(_node("node-1", 128, 120), allocated_mib=64, enclaves=2),
            NodeAccount(_node("node-2", 128, 128, ready=False), allocated_mib=0, enclaves=0),
        ),
    )
    server = serve()

    _, samples = scrape_url(f"http://127.0.0.1:{server.port}/metrics")

    assert value(samples, names.EPC_CAPACITY_BYTES, pool="sgx", node="node-1") == 128 * MIB
    assert value(samples, names.EPC_ALLOCATABLE_BYTES, pool="sgx", node="node-1") == 120 * MIB
    assert value(samples, names.EPC_ALLOCATED_BYTES, pool="sgx", node="node-1") == 64 * MIB
    assert value(samples, names.NODE_ENCLAVES, pool="sgx", node="node-1") == 2
    assert value(samples, names.EPC_ALLOCATED_BYTES, pool="sgx", node="node-2") == 0
    assert value(samples, names.POOL_NODES_READY, pool="sgx") == 1
    assert value(samples, names.BUILD_INFO, component="test") == 1


def test_a_node_shared_by_overlapping_pools_is_exported_once(
    registry: CollectorRegistry, serve: Callable[[], MetricsServer]
) -> None:
    metrics = OperatorMetrics(registry)
    shared = NodeAccount(_node("node-1", 128, 128), allocated_mib=64, enclaves=1)
    for pool, other in (("old", "new"), ("new", "old")):
        facts = PoolFacts(
            pool=pool,
            shared_with={"node-1": (other,)},
            counted_elsewhere=frozenset({"node-1"}) if pool == "new" else frozenset(),
        )
        status = compute_pool_status([shared], 1, EPCPoolStatus(), datetime.now(UTC), facts)
        metrics.record_pool(pool, status)
    server = serve()

    _, samples = scrape_url(f"http://127.0.0.1:{server.port}/metrics")

    assert value(samples, names.EPC_CAPACITY_BYTES, pool="old", node="node-1") == 128 * MIB
    exported = [labels for labels, _ in samples.get(names.EPC_CAPACITY_BYTES, [])]
    assert [(labels["pool"], labels["node"]) for labels in exported] == [("old", "node-1")]


def test_nodes_that_leave_a_pool_and_deleted_pools_lose_their_series(
    registry: CollectorRegistry, serve: Callable[[], MetricsServer]
) -> None:
    metrics = OperatorMetrics(registry)
    metrics.record_pool(
        "sgx",
        _pool_status(
            NodeAccount(_node("node-1", 128, 128), 0, 0),
            NodeAccount(_node("node-2", 128, 128), 0, 0),
        ),
    )
    metrics.record_pool("other", _pool_status(NodeAccount(_node("node-9", 64, 64), 0, 0)))
    metrics.record_pool("sgx", _pool_status(NodeAccount(_node("node-1", 128, 128), 16, 1)))
    metrics.forget_pool("other")
    server = serve()

    _, samples = scrape_url(f"http://127.0.0.1:{server.port}/metrics")

    series = {(s["pool"], s["node"]) for s, _ in samples[names.EPC_CAPACITY_BYTES]}
    assert series == {("sgx", "node-1")}
    assert value(samples, names.EPC_ALLOCATED_BYTES, node="node-1") == 16 * MIB
    assert {s["pool"] for s, _ in samples[names.POOL_NODES_READY]} == {"sgx"}


def test_enclave_container_epc_and_replicas_follow_its_status(
    registry: CollectorRegistry, serve: Callable[[], MetricsServer]
) -> None:
    metrics = OperatorMetrics(registry)
    status = EnclaveContainerStatus.model_validate(
        {
            "replicas": 3,
            "scheduledReplicas": 3,
            "readyReplicas": 2,
            "attestedReplicas": 1,
            "epc": {"perReplica": "64Mi", "requested": "192Mi", "allocated": "128Mi"},
        }
    )
    metrics.record_enclave_container("shop", "payments", 3, status)
    metrics.record_enclave_container("shop", "gone", 1, EnclaveContainerStatus())
    metrics.forget_enclave_container("shop", "gone")
    server = serve()

    _, samples = scrape_url(f"http://127.0.0.1:{server.port}/metrics")

    ec = {"namespace": "shop", "enclavecontainer": "payments"}
    assert value(samples, names.EC_EPC_REQUESTED_BYTES, **ec) == 192 * MIB
    assert value(samples, names.EC_EPC_ALLOCATED_BYTES, **ec) == 128 * MIB
    replicas = {s["state"]: v for s, v in samples[names.EC_REPLICAS]}
    assert replicas == {"desired": 3, "current": 3, "scheduled": 3, "ready": 2, "attested": 1}
    assert {s["enclavecontainer"] for s, _ in samples[names.EC_EPC_REQUESTED_BYTES]} == {"payments"}


async def test_reconciles_are_counted_timed_and_their_errors_classified(
    registry: CollectorRegistry, serve: Callable[[], MetricsServer]
) -> None:
    metrics = OperatorMetrics(registry)
    async with metrics.reconciling("epcpool"):
        pass
    with pytest.raises(TimeoutError):
        async with metrics.reconciling("epcpool"):
            raise TimeoutError
    server = serve()

    text, samples = scrape_url(f"http://127.0.0.1:{server.port}/metrics")

    assert value(samples, names.RECONCILES_TOTAL, kind="epcpool") == 2
    assert value(samples, names.RECONCILE_ERRORS_TOTAL, kind="epcpool", error="TimeoutError") == 1
    assert value(samples, names.RECONCILE_DURATION_SECONDS + "_count", kind="epcpool") == 2
    assert "_created" not in text  # no creation-time series next to the counters
