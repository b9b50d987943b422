"""Reconciling one EnclaveContainer: its Deployment, then its status.

Level-triggered and idempotent: every run looks at the whole current state (from the
caches) and converges, so a restart in the middle loses nothing (kopf lists every
object again) and creates nothing twice (the Deployment is applied server-side under
a fixed name).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from kubetee.api.v1alpha1 import (
    API_VERSION,
    EnclaveContainerSpec,
    EnclaveContainerStatus,
    EPCPoolSpec,
)
from kubetee.api.v1alpha1.enclavecontainer import status_from_body
from kubetee.api.validation import describe
from kubetee.controller import accounting
from kubetee.controller.conditions import transitions
from kubetee.controller.deployment import Owner, Placement, build_deployment, spec_hash
from kubetee.controller.disruption import build_disruption_budget
from kubetee.controller.ecevents import new_causes, warning_message
from kubetee.controller.ecstatus import (
    READY,
    SCHEDULED,
    WARNING_REASONS,
    Blocker,
    Observation,
    compute_status,
)
from kubetee.controller.names import EC_PLURAL, SPEC_HASH_ANNOTATION
from kubetee.controller.service_health import REACHABLE, ServiceHealth
from kubetee.controller.sidecar import RuntimeSettings
from kubetee.controller.views import ResourceView
from kubetee.k8s.errors import ApiRefusedError
from kubetee.k8s.writes import ObjectRef, Writer
from kubetee.metrics.operator import operator_metrics
from kubetee.reconcile.caches import Caches, ObjectKey, one

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]

# How long a status that only says "replicas are being scheduled" waits for the
# scheduler's verdict, counted from when every replica pod exists (the scheduler has
# them to judge), before it is written anyway. Pods of a new Deployment are bound a
# moment after they are created; writing the moment in between would double the status
# writes of every new EnclaveContainer (benchmarks/operator_scale.py). Counted from the
# first such status instead, a busy control plane (the Deployment and ReplicaSet
# controllers creating the pods late) used up the wait before the scheduler saw them:
# a third of new EnclaveContainers were written twice.
SCHEDULING_SETTLE = timedelta(seconds=2)
# The longest a new status is held at all: controllers that never create the pods
# still show as "Scheduling" after this.
SCHEDULING_HOLD_LIMIT = timedelta(seconds=10)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Defaults:
    """Operator-wide choices for every EnclaveContainer."""

    runtime: RuntimeSettings
    scheduler_name: str


class EnclaveContainerReconciler:
    """Converges one EnclaveContainer at a time; keys are (namespace, name)."""

    def __init__(
        self,
        caches: Caches,
        writer: Writer,
        defaults: Defaults,
        *,
        requeue: Callable[[ObjectKey], None],
        requeue_after: Callable[[ObjectKey, float], None] | None = None,
        attestation: Callable[[], ServiceHealth] = lambda: REACHABLE,
        overdue: Callable[[], frozenset[tuple[str, str]]] = frozenset,
        clock: Clock = utcnow,
        settle: timedelta = SCHEDULING_SETTLE,
        hold_limit: timedelta = SCHEDULING_HOLD_LIMIT,
    ) -> None:
        self._caches = caches
        self._writer = writer
        self._defaults = defaults
        self._requeue = requeue
        self._requeue_after = requeue_after
        self._settle = settle
        self._hold_limit = hold_limit
        self._attestation = attestation
        self._overdue = overdue
        self._clock = clock
        # What this process wrote last, by key: (uid, value). The caches catch up a
        # moment later; these keep a quick second event from writing it again.
        self._applied: dict[ObjectKey, tuple[str, str]] = {}
        self._refused: dict[ObjectKey, tuple[str, str, str]] = {}
        self._written: dict[ObjectKey, tuple[str, EnclaveContainerStatus]] = {}
        self._budgets: dict[ObjectKey, tuple[str, str]] = {}
        # A status saying only "Scheduling" held back, by key: (uid, since when, since
        # when every replica pod exists or None).
        self._held: dict[ObjectKey, tuple[str, datetime, datetime | None]] = {}
        # The Deployment manifest last built, by key, with what it was built from: most
        # runs (a pod changed) only compare its hash, and building it costs more than the
        # rest of the run.
        self._manifests: dict[ObjectKey, tuple[Hashable, dict[str, Any]]] = {}

    def deployment_deleted(self, key: ObjectKey) -> None:
        """Forget the applied hash: the next run must create the Deployment again."""
        self._applied.pop(key, None)

    async def reconcile(self, key: ObjectKey) -> None:
        view = one(self._caches.enclave_containers, key)
        if view is None:
            for memory in (
                self._applied,
                self._refused,
                self._written,
                self._budgets,
                self._held,
                self._manifests,
            ):
                memory.pop(key, None)
            operator_metrics().forget_enclave_container(*key)
            return
        if view.deleting:
            return  # the garbage collector removes the Deployment through owner references
        spec, blocker = self._parse(view)
        placement: Placement | None = None
        if spec is not None and blocker is None:
            placement, blocker = self._placement(spec)
        if spec is not None and placement is not None and blocker is None:
            await self._sync_disruption_budget(key, view, spec)
            applied, blocker = await self._apply(key, view, spec, placement)
            if applied:
                # Its pods do not exist yet: their events (or this) bring the status.
                self._requeue(key)
                return
        await self._write_status(key, view, spec, placement, blocker)

    def _parse(self, view: ResourceView) -> tuple[EnclaveContainerSpec | None, Blocker | None]:
        try:
            return EnclaveContainerSpec.model_validate(view.spec), None
        except ValidationError as error:
            return None, Blocker("InvalidSpec", f"spec is invalid: {describe(error)}")

    def _placement(self, spec: EnclaveContainerSpec) -> tuple[Placement | None, Blocker | None]:
        if spec.pool_ref is None:
            return Placement.anywhere(self._defaults.scheduler_name), None
        name = spec.pool_ref.name
        pool = one(self._caches.pools, name)
        if pool is None:
            return None, Blocker(
                "PoolNotFound",
                f"EPCPool {name!r} does not exist: create it or change spec.poolRef.name",
            )
        try:
            pool_spec = EPCPoolSpec.model_validate(pool.spec)
        except ValidationError as error:
            return None, Blocker(
                "PoolNotFound", f"EPCPool {name!r} has an invalid spec: {describe(error)}"
            )
        return Placement.of_pool(name, pool_spec), None

    async def _apply(
        self,
        key: ObjectKey,
        view: ResourceView,
        spec: EnclaveContainerSpec,
        placement: Placement,
    ) -> tuple[bool, Blocker | None]:
        """Apply the Deployment if it differs; (whether applied, what blocks it)."""
        deployment = one(self._caches.deployments, key)
        if deployment is not None and deployment.controller_uid != view.uid:
            return False, Blocker(
                "DeploymentConflict",
                f"Deployment {view.name!r} exists and is not owned by this EnclaveContainer: "
                "delete it or rename the EnclaveContainer",
            )
        manifest = self._manifest(key, view, spec, placement)
        digest = manifest["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
        refused = self._refused.get(key)
        if refused is not None and refused[:2] == (view.uid, digest):
            return False, Blocker("InvalidSpec", refused[2])
        if deployment is not None:
            if deployment.spec_hash != digest:
                if self._applied.get(key) == (view.uid, digest):
                    return False, None  # applied a moment ago; the watch is behind
            elif deployment.spec_replicas == spec.replicas:
                return False, None  # as applied (a scaled Deployment is set back)
        try:
            await self._writer.apply_deployment(manifest)
        except ApiRefusedError as error:
            message = f"the Deployment for spec.template was refused: {error}"
            self._refused[key] = (view.uid, digest, message)
            return False, Blocker("InvalidSpec", message)
        self._refused.pop(key, None)
        self._applied[key] = (view.uid, digest)
        if deployment is not None and deployment.spec_hash == spec_hash(
            {**manifest["spec"], "replicas": deployment.spec_replicas}
        ):
            # Only the replica count changed: no rollout.
            await self._event(
                view,
                "Normal",
                "DeploymentScaled",
                f"Scaled Deployment {view.name} to {spec.replicas} replicas",
            )
        elif deployment is not None:
            # A creation needs no Event of ours: the Deployment's own say as much.
            await self._event(
                view,
                "Normal",
                "DeploymentUpdated",
                f"Updated Deployment {view.name} ({spec.replicas} replicas of {spec.epc} "
                "EPC): rolling the replicas",
            )
        return True, None

    def _manifest(
        self,
        key: ObjectKey,
        view: ResourceView,
        spec: EnclaveContainerSpec,
        placement: Placement,
    ) -> dict[str, Any]:
        """The Deployment for this spec and placement (the spec is the generation's)."""
        source = (
            view.uid,
            view.generation,
            placement.pool,
            tuple(sorted(placement.node_selector.items())),
            placement.scheduler_name,
        )
        built = self._manifests.get(key)
        if built is not None and built[0] == source:
            return built[1]
        owner = Owner(view.namespace, view.name, view.uid)
        manifest = build_deployment(owner, spec, placement, self._defaults.runtime)
        self._manifests[key] = (source, manifest)
        return manifest

    async def _sync_disruption_budget(
        self, key: ObjectKey, view: ResourceView, spec: EnclaveContainerSpec
    ) -> None:
        """Apply the PodDisruptionBudget spec.disruption asks for; delete ours if none."""
        existing = one(self._caches.disruption_budgets, key)
        if existing is not None and existing.controller_uid != view.uid:
            return  # someone else's budget of that name: it still holds, leave it
        manifest = build_disruption_budget(Owner(view.namespace, view.name, view.uid), spec)
        if manifest is None:
            if existing is not None:
                await self._writer.delete_disruption_budget(view.namespace, view.name)
            self._budgets.pop(key, None)
            return
        digest = manifest["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
        if (existing is not None and existing.spec_hash == digest) or self._budgets.get(key) == (
            view.uid,
            digest,
        ):
            return
        await self._writer.apply_disruption_budget(manifest)
        self._budgets[key] = (view.uid, digest)

    def disruption_budget_deleted(self, key: ObjectKey) -> None:
        """Forget the applied budget: the next run must create it again if wanted."""
        self._budgets.pop(key, None)

    def _free(self, placement: Placement | None) -> accounting.FreeEPC:
        # From the nodes and pods as they are now, not the pool's last status: a figure
        # computed before the latest bindings would be stale as soon as it is written.
        selector = placement.node_selector if placement and placement.pool else None
        nodes = accounting.select_nodes(self._caches.all_nodes(), selector)
        return accounting.free_epc(accounting.account(nodes, self._caches.pods_on))

    async def _write_status(
        self,
        key: ObjectKey,
        view: ResourceView,
        spec: EnclaveContainerSpec | None,
        placement: Placement | None,
        blocker: Blocker | None,
    ) -> None:
        pods = list(self._caches.replicas.get(key, ()))
        needs_free = any(pod.unschedulable_message for pod in pods)
        nodes = {pod.node: one(self._caches.nodes, pod.node) for pod in pods if pod.node}
        observation = Observation(
            name=view.name,
            generation=view.generation,
            spec=spec,
            pool=spec.pool_ref.name if spec is not None and spec.pool_ref else "",
            blocker=blocker,
            pods=pods,
            deployment=one(self._caches.deployments, key),
            free=self._free(placement) if needs_free else accounting.FreeEPC(0, 0, 0, 0),
            attestation=self._attestation(),
            overdue=frozenset(
                name for namespace, name in self._overdue() if namespace == view.namespace
            ),
            lost_nodes=frozenset(name for name, node in nodes.items() if node is None),
            unready_nodes=frozenset(
                name for name, node in nodes.items() if node is not None and not node.ready
            ),
            # Only the nodes of its replicas matter (not a scan of every node per run).
            nodes_cannot_attest=frozenset(
                name
                for name, node in nodes.items()
                if node is not None and node.cannot_run_enclaves
            ),
        )
        written = self._written.get(key)
        previous = (
            written[1]
            if written is not None and written[0] == view.uid
            else status_from_body(view.status)
        )
        status = compute_status(observation, previous, self._clock())
        operator_metrics().record_enclave_container(
            view.namespace, view.name, spec.replicas if spec is not None else 0, status
        )
        if status == previous:
            self._held.pop(key, None)
            return
        wanted = spec.replicas if spec is not None else 0
        if self._hold_while_scheduling(key, view, status, wanted):
            return
        await self._writer.patch_status(
            EC_PLURAL, view.namespace, view.name, status.model_dump(mode="json")
        )
        self._written[key] = (view.uid, status)
        # One Warning per cause when it starts (conditions that share a cause, such as
        # Ready blocked by what blocks Scheduled, make one), in words that stay true.
        for reason, message in new_causes(
            previous.conditions, status.conditions, WARNING_REASONS
        ).items():
            await self._event(
                view, "Warning", reason, warning_message(reason, message, spec, view.namespace)
            )
        for condition in transitions(previous.conditions, status.conditions):
            if condition.type == READY and condition.status == "True":
                # Ready implies Scheduled and Attested: one Event says all three.
                await self._event(view, "Normal", condition.reason, condition.message)

    def _hold_while_scheduling(
        self, key: ObjectKey, view: ResourceView, status: EnclaveContainerStatus, wanted: int
    ) -> bool:
        """Whether to hold back a status whose replicas await the scheduler's verdict.

        Held until ``settle`` has passed since every wanted replica pod exists, and at
        most ``hold_limit`` from the first such status, then written: controllers or a
        scheduler that never answer still show. Any verdict (bound, or unschedulable) is
        written at once.
        """
        scheduled = next((c for c in status.conditions if c.type == SCHEDULED), None)
        if (
            self._requeue_after is None
            or scheduled is None
            or scheduled.reason != "Scheduling"
            or self._settle <= timedelta(0)
        ):
            self._held.pop(key, None)
            return False
        now = self._clock()
        held = self._held.get(key)
        if held is None or held[0] != view.uid:
            held = (view.uid, now, None)
        pods_since = held[2]
        if status.replicas < wanted:
            pods_since = None  # the controllers have not created them all (yet)
        elif pods_since is None:
            pods_since = now
        held = (view.uid, held[1], pods_since)
        left = self._hold_limit - (now - held[1])
        if pods_since is not None:
            left = min(left, self._settle - (now - pods_since))
        if left <= timedelta(0):
            self._held.pop(key, None)
            return False
        self._held[key] = held
        self._requeue_after(key, left.total_seconds())
        return True

    async def _event(self, view: ResourceView, type_: str, reason: str, message: str) -> None:
        ref = ObjectRef(API_VERSION, "EnclaveContainer", view.name, view.namespace, view.uid)
        try:
            await self._writer.post_event(ref, type_, reason, message)
        except Exception as error:
            logger.warning(
                "could not post Event %s for %s/%s: %s", reason, view.namespace, view.name, error
            )
