"""The running operator: two reconcilers behind two work queues, fed by watch events.

The kopf handlers call the ``*_changed`` methods with small views of what changed;
this decides which objects to reconcile and when. Nothing here talks to kopf.
"""

from __future__ import annotations

from collections.abc import Callable

from kubetee.controller.service_health import ServiceHealth
from kubetee.controller.sidecar import RuntimeSettings
from kubetee.controller.views import (
    DeploymentView,
    DisruptionBudgetView,
    NodeView,
    PodView,
    ResourceView,
)
from kubetee.k8s.writes import Writer
from kubetee.reconcile.caches import Caches, ObjectKey
from kubetee.reconcile.enclavecontainers import Defaults, EnclaveContainerReconciler
from kubetee.reconcile.epcpools import EPCPoolReconciler
from kubetee.reconcile.queue import WorkQueue
from kubetee.reconcile.service_probe import AttestationServiceProbe
from kubetee.settings import OperatorSettings
from kubetee.tcb.settings import TcbSettings

# Pools are few and their reconcile is cheap; two workers keep one slow write from
# holding the others back.
_POOL_WORKERS = 2


class OperatorRuntime:
    """Reconcilers, their queues, and the routing of events to keys."""

    def __init__(
        self,
        caches: Caches,
        writer: Writer,
        settings: OperatorSettings,
        overdue: Callable[[], frozenset[tuple[str, str]]] = frozenset,
    ) -> None:
        self._caches = caches
        self._status_delay = settings.status_delay
        ca_pem = settings.attestation_ca.read_text() if settings.attestation_ca else None
        self.attestation = AttestationServiceProbe(
            settings.attestation_url,
            ca_pem,
            settings.attestation_probe_seconds,
            self._attestation_changed,
        )
        self.pools = EPCPoolReconciler(caches, writer, self._queue_enclave_container)
        self.enclave_containers = EnclaveContainerReconciler(
            caches,
            writer,
            Defaults(
                RuntimeSettings(
                    settings.runtime_image,
                    settings.attestation_url,
                    ca_pem,
                    tcb_placement=TcbSettings().enabled,
                ),
                settings.default_scheduler,
            ),
            requeue=self._queue_enclave_container,
            requeue_after=self._queue_enclave_container_after,
            attestation=lambda: self.attestation.health,
            overdue=overdue,
        )
        self.ec_queue: WorkQueue[ObjectKey] = WorkQueue(
            "enclavecontainer",
            self.enclave_containers.reconcile,
            delay=settings.status_delay,
            workers=settings.workers,
        )
        self.pool_queue: WorkQueue[str] = WorkQueue(
            "epcpool", self.pools.reconcile, delay=settings.pool_delay, workers=_POOL_WORKERS
        )
        self._generations: dict[ObjectKey, tuple[str, int]] = {}
        self._deployment_generations: dict[ObjectKey, int] = {}
        # Whether each node was Ready when last seen: its replicas' status follows changes.
        self._node_ready: dict[str, bool] = {}
        self._cannot_run_enclaves: dict[str, bool] = {}

    def start(self) -> None:
        self.ec_queue.start()
        self.pool_queue.start()
        self.attestation.start()

    async def stop(self) -> None:
        await self.attestation.stop()
        await self.ec_queue.stop()
        await self.pool_queue.stop()

    def _queue_enclave_container(self, key: ObjectKey) -> None:
        self.ec_queue.add(key)

    def requeue(self, key: ObjectKey) -> None:
        """Recompute an EnclaveContainer's status: something it shows changed outside
        the watched objects (a replica's renewals, followed by the attestation upkeep)."""
        self.ec_queue.add(key)

    def _queue_enclave_container_after(self, key: ObjectKey, seconds: float) -> None:
        self.ec_queue.add(key, after=seconds)

    def _attestation_changed(self, health: ServiceHealth) -> None:
        del health  # every EnclaveContainer's status says it
        for key in self._caches.enclave_containers:
            self.ec_queue.add(key)

    def _queue_all_pools(self) -> None:
        for name in self._caches.pools:
            self.pool_queue.add(name)

    def enclave_container_changed(self, view: ResourceView | None, key: ObjectKey) -> None:
        """An EnclaveContainer was listed, changed or deleted (``view`` None)."""
        if view is None:
            self._generations.pop(key, None)
            self.ec_queue.add(key, after=0)
            return
        seen = (view.uid, view.generation)
        if self._generations.get(key) == seen:
            return  # only its status (our own write) or metadata changed
        self._generations[key] = seen
        self.ec_queue.add(key, after=0)

    def pod_changed(self, pod: PodView) -> None:
        """A pod changed: its EnclaveContainer's status, its pool's accounting."""
        if pod.enclave_container:
            self.ec_queue.add((pod.namespace, pod.enclave_container))
        if pod.epc_mib > 0 and pod.node:
            self._queue_all_pools()

    def deployment_changed(self, deployment: DeploymentView, deleted: bool) -> None:
        """Only what the status or the applied spec depends on: deletion, a different
        spec (ours applied, or someone else's edit to undo), a replica failure (such as
        an exceeded quota)."""
        key = (deployment.namespace, deployment.name)
        if deleted:
            self._deployment_generations.pop(key, None)
            self.enclave_containers.deployment_deleted(key)
            self.ec_queue.add(key, after=0)
            return
        changed = self._deployment_generations.get(key) != deployment.generation
        self._deployment_generations[key] = deployment.generation
        if changed or deployment.replica_failure:
            self.ec_queue.add(key)

    def disruption_budget_changed(self, budget: DisruptionBudgetView, deleted: bool) -> None:
        """An owned PodDisruptionBudget changed: put back what its EnclaveContainer asks."""
        key = (budget.namespace, budget.name)
        if deleted:
            self.enclave_containers.disruption_budget_deleted(key)
        self.ec_queue.add(key)

    def node_changed(self, node: NodeView, deleted: bool = False) -> None:
        """Any node may join or leave any pool by its labels; the replicas on a node that
        went away, changed readiness, or lost (or regained) its enclave slots say so at
        once (not when their pods are gone)."""
        self._queue_all_pools()
        was = self._node_ready.pop(node.name, None) if deleted else self._node_ready.get(node.name)
        could_not = (
            self._cannot_run_enclaves.pop(node.name, None)
            if deleted
            else self._cannot_run_enclaves.get(node.name)
        )
        if not deleted:
            self._node_ready[node.name] = node.ready
            self._cannot_run_enclaves[node.name] = node.cannot_run_enclaves
        readiness_changed = was is not None and was != node.ready
        slots_changed = could_not != node.cannot_run_enclaves
        if deleted or readiness_changed or slots_changed:
            for pod in self._caches.pods_on(node.name):
                if pod.enclave_container:
                    self.ec_queue.add((pod.namespace, pod.enclave_container))

    def namespace_changed(self, name: str) -> None:
        """Pools with a quota for the namespace apply it (or say it is missing)."""
        for pool, views in self._caches.pools.items():
            for view in views:
                quotas = view.spec.get("quotas")
                if isinstance(quotas, list) and any(
                    isinstance(q, dict) and q.get("namespace") == name for q in quotas
                ):
                    self.pool_queue.add(pool)

    def pool_changed(self, name: str) -> None:
        self.pool_queue.add(name, after=0)
