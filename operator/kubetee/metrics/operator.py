"""The operator's metrics: EPC per pool and node, EPC per EnclaveContainer, reconciles.

The EPC figures are the operator's own accounting, exactly what it writes into the
EPCPool and EnclaveContainer statuses: the operator calls :meth:`record_pool` and
:meth:`record_enclave_container` with the status it computed, and the ``forget_*``
methods when the object is gone, so no series outlives its object.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from kubetee.api.quantity import QuantityError, parse_bytes
from kubetee.api.v1alpha1 import EnclaveContainerStatus, EPCPoolStatus
from kubetee.metrics import names

# Reconciles take milliseconds when nothing changes, seconds when the API is slow.
RECONCILE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def quantity_bytes(quantity: str) -> float:
    """Bytes of a status quantity such as ``128Mi``; 0 for an unreadable one."""
    try:
        return float(parse_bytes(quantity))
    except QuantityError:
        return 0.0


class OperatorMetrics:
    """Gauges of the EPC accounting and counters of the reconcile loops."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        pool_node = ("pool", "node")
        self.capacity = Gauge(
            names.EPC_CAPACITY_BYTES,
            "EPC the node advertises (kubetee.io/epc capacity), per EPCPool and node.",
            pool_node,
            registry=registry,
        )
        self.allocatable = Gauge(
            names.EPC_ALLOCATABLE_BYTES,
            "EPC allocatable on the node (healthy EPC), per EPCPool and node.",
            pool_node,
            registry=registry,
        )
        self.allocated = Gauge(
            names.EPC_ALLOCATED_BYTES,
            "EPC requested by the non-terminated pods bound to the node, per EPCPool and node.",
            pool_node,
            registry=registry,
        )
        self.enclaves = Gauge(
            names.NODE_ENCLAVES,
            "Enclaves (pods holding EPC) bound to the node, per EPCPool and node.",
            pool_node,
            registry=registry,
        )
        self.nodes_ready = Gauge(
            names.POOL_NODES_READY,
            "Nodes of the EPCPool that are Ready.",
            ("pool",),
            registry=registry,
        )
        ec = ("namespace", "enclavecontainer")
        self.ec_requested = Gauge(
            names.EC_EPC_REQUESTED_BYTES,
            "EPC the desired replicas of the EnclaveContainer request (replicas x epc).",
            ec,
            registry=registry,
        )
        self.ec_allocated = Gauge(
            names.EC_EPC_ALLOCATED_BYTES,
            "EPC held by the EnclaveContainer's replicas bound to nodes.",
            ec,
            registry=registry,
        )
        self.ec_replicas = Gauge(
            names.EC_REPLICAS,
            "Replicas of the EnclaveContainer by state: desired, current, scheduled, ready, "
            "attested.",
            (*ec, "state"),
            registry=registry,
        )
        self.reconciles = Counter(
            names.RECONCILES_TOTAL,
            "Reconciles run, per kind of object.",
            ("kind",),
            registry=registry,
        )
        self.reconcile_errors = Counter(
            names.RECONCILE_ERRORS_TOTAL,
            "Reconciles that raised, per kind of object and error class.",
            ("kind", "error"),
            registry=registry,
        )
        self.reconcile_duration = Histogram(
            names.RECONCILE_DURATION_SECONDS,
            "Time one reconcile took, per kind of object.",
            ("kind",),
            buckets=RECONCILE_BUCKETS,
            registry=registry,
        )
        self._pool_nodes: dict[str, set[str]] = {}
        self._ec_seen: set[tuple[str, str]] = set()

    # -- EPCPool ---------------------------------------------------------------------

    def record_pool(self, pool: str, status: EPCPoolStatus) -> None:
        """Set the per-node gauges of ``pool`` from its status; drop nodes that left it.

        A node shared by overlapping pools has gauges under the pool that counts it only,
        so sums over pools count it once (docs/operator.md, "Overlapping pools").
        """
        counted = [n for n in status.nodes if n.counted_in in {"", pool}]
        current = {node.name for node in counted}
        for gone in self._pool_nodes.get(pool, set()) - current:
            self._remove_node(pool, gone)
        for node in counted:
            self.capacity.labels(pool, node.name).set(quantity_bytes(node.capacity))
            self.allocatable.labels(pool, node.name).set(quantity_bytes(node.allocatable))
            self.allocated.labels(pool, node.name).set(quantity_bytes(node.allocated))
            self.enclaves.labels(pool, node.name).set(node.enclaves)
        self.nodes_ready.labels(pool).set(status.totals.ready_nodes)
        self._pool_nodes[pool] = current

    def forget_pool(self, pool: str) -> None:
        for node in self._pool_nodes.pop(pool, set()):
            self._remove_node(pool, node)
        _remove(self.nodes_ready, pool)

    def _remove_node(self, pool: str, node: str) -> None:
        for gauge in (self.capacity, self.allocatable, self.allocated, self.enclaves):
            _remove(gauge, pool, node)

    # -- EnclaveContainer ------------------------------------------------------------

    def record_enclave_container(
        self, namespace: str, name: str, desired_replicas: int, status: EnclaveContainerStatus
    ) -> None:
        """Set the EPC and replica gauges of one EnclaveContainer from its status."""
        self.ec_requested.labels(namespace, name).set(quantity_bytes(status.epc.requested))
        self.ec_allocated.labels(namespace, name).set(quantity_bytes(status.epc.allocated))
        states = {
            "desired": desired_replicas,
            "current": status.replicas,
            "scheduled": status.scheduled_replicas,
            "ready": status.ready_replicas,
            "attested": status.attested_replicas,
        }
        for state, count in states.items():
            self.ec_replicas.labels(namespace, name, state).set(count)
        self._ec_seen.add((namespace, name))

    def forget_enclave_container(self, namespace: str, name: str) -> None:
        if (namespace, name) not in self._ec_seen:
            return
        self._ec_seen.discard((namespace, name))
        _remove(self.ec_requested, namespace, name)
        _remove(self.ec_allocated, namespace, name)
        for state in ("desired", "current", "scheduled", "ready", "attested"):
            _remove(self.ec_replicas, namespace, name, state)

    # -- reconciles ------------------------------------------------------------------

    @asynccontextmanager
    async def reconciling(self, kind: str) -> AsyncIterator[None]:
        """Count one reconcile of ``kind``, its duration, and its error class if it raises."""
        started = time.perf_counter()
        self.reconciles.labels(kind).inc()
        try:
            yield
        except Exception as error:
            self.reconcile_errors.labels(kind, type(error).__name__).inc()
            raise
        finally:
            self.reconcile_duration.labels(kind).observe(time.perf_counter() - started)


def _remove(metric: Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # never set
        metric.remove(*labels)


_default: OperatorMetrics | None = None


def operator_metrics() -> OperatorMetrics:
    """The operator's metrics on the default registry (created on first use)."""
    global _default  # noqa: PLW0603 - one set of metrics per process, made lazily
    if _default is None:
        _default = OperatorMetrics()
    return _default
