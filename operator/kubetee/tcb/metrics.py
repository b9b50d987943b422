"""Metrics of TCB recovery, exported by the operator."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from kubetee.metrics import names


class TcbMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.nodes = Gauge(
            names.TCB_NODES,
            "SGX nodes by TCB status under the newest TCB evaluation of their family.",
            ("status",),
            registry=registry,
        )
        self.evaluation = Gauge(
            names.TCB_EVALUATION_DATA_NUMBER,
            "The tcbEvaluationDataNumber of the newest trusted TCB Info, by FMSPC.",
            ("fmspc",),
            registry=registry,
        )
        self.replicas = Gauge(
            names.TCB_RECOVERY_REPLICAS,
            "Replicas on platforms their policy no longer accepts, by state (pending: "
            "being moved before the deadline; withdrawn: the deadline passed).",
            ("state",),
            registry=registry,
        )
        self.steps = Counter(
            names.TCB_RECOVERY_STEPS_TOTAL,
            "TCB recovery steps taken: pending, moved, withdrawn, recovered.",
            ("step",),
            registry=registry,
        )
