"""Replicas' attestation upkeep: re-attest on policy change, replace failures, expire.

:func:`kubetee.attestation_service.replicas.decide` is applied to every replica against
its EnclaveContainer's current policy by a background sweep and, for one
EnclaveContainer, at once when its policy changes. Requests to re-attest and withdrawn
attestations are written as decided; replacements go through
:func:`kubetee.controller.replacement.plan_replacements`: by eviction (so
PodDisruptionBudgets hold), never more unavailable replicas than the Deployment's
``maxUnavailable``, and none while the attestation service cannot be reached. A replica
waiting for its turn keeps serving as it was attested.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kubernetes.aio import client
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from kubetee.api.v1alpha1 import API_VERSION, EnclaveContainerSpec
from kubetee.attestation.policy import AttestationPolicy
from kubetee.attestation_service.names import ATTESTED_CONDITION, REATTEST_ANNOTATION
from kubetee.attestation_service.replicas import (
    FAIL_CLOSED,
    Action,
    ExpiryPolicy,
    ReplicaAttestation,
    decide,
)
from kubetee.attestation_service.workloads import policy_hash
from kubetee.controller.names import RUNTIME_CONTAINER
from kubetee.controller.overdue import REATTESTATION_OVERDUE, RenewalClock
from kubetee.controller.replacement import EvictionOutcome, plan_replacements
from kubetee.controller.service_health import ServiceHealth
from kubetee.controller.views import DeploymentView, PodView, ResourceView
from kubetee.k8s.errors import ApiError, ApiUnavailableError
from kubetee.k8s.writes import KubeWriter, ObjectRef
from kubetee.reconcile.caches import ObjectKey, one
from kubetee.reconcile.eviction import request_eviction
from kubetee.reconcile.sweeper import Sweeper

logger = logging.getLogger(__name__)

_MERGE_PATCH = "application/merge-patch+json"
_STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
# How long an evicted pod counts as going away before the watch shows it terminating.
_EVICTION_MEMORY_SECONDS = 60.0

Health = Callable[[], tuple[ServiceHealth, datetime | None]]


class UpkeepSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KUBETEE_", extra="ignore")

    attestation_sweep_seconds: float = Field(default=5.0, gt=0)
    reattest_grace_seconds: float = Field(
        default=60.0, gt=0, description="Time a replica has to re-attest after a policy change."
    )
    reattest_overdue_seconds: float = Field(
        default=180.0,
        gt=0,
        description="Time without a renewed attestation (runtimes renew every 120 s) after "
        "which a ReattestationOverdue Warning names the replica, before its attestation "
        "expires.",
    )
    attestation_expiry: ExpiryPolicy = Field(
        default=FAIL_CLOSED,
        description="When a replica's attestation validity passes: FailClosed withdraws "
        "its Attested condition at once (NotReady, no traffic); KeepServing keeps it while "
        "the attestation service cannot attest, and withdraws it only if the replica has "
        "not re-attested within the re-attest grace after the service answers again.",
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Indexes:
    """kopf's indexes the upkeep reads: replicas' attestation facts, pods, Deployments."""

    attestation: Mapping[ObjectKey, Any]
    enclave_containers: Mapping[ObjectKey, Any]
    pods: Mapping[ObjectKey, Any]
    deployments: Mapping[ObjectKey, Any]


class AttestationUpkeep(Sweeper[Indexes]):
    def __init__(
        self,
        api_client: Any,
        settings: UpkeepSettings,
        health: Health,
        renewal_changed: Callable[[ObjectKey], None] = lambda key: None,
    ) -> None:
        super().__init__(api_client, settings.attestation_sweep_seconds, "attestation upkeep")
        self._core = client.CoreV1Api(api_client)
        self._writer = KubeWriter(api_client)
        self._settings = settings
        self._health = health
        self._policies: dict[tuple[str, int], tuple[AttestationPolicy, str, int] | None] = {}
        self._seen: dict[ObjectKey, str] = {}
        # Pods evicted by this process (uid -> name, when), and those whose eviction a
        # PodDisruptionBudget refused (uid), to tell the user once.
        self._evicted: dict[str, tuple[str, datetime]] = {}
        self._blocked: set[str] = set()
        self.renewals = RenewalClock(settings.reattest_overdue_seconds)
        # Told when a replica turns overdue or renews again: its status says so.
        self._renewal_changed = renewal_changed

    async def sweep(self, indexes: Indexes, now: datetime) -> None:
        self._forget_old_evictions(now)
        self.renewals.forget_except(
            {replica.uid for replicas in indexes.attestation.values() for replica in replicas}
        )
        for key in list(indexes.attestation):
            view = one(indexes.enclave_containers, key)
            if view is None:
                continue
            await self._remove_refused(view, indexes.pods.get(key, ()))
            current = self._policy(view)
            if current is not None:
                await self._sweep_one(key, view, current, indexes, now)

    async def policy_event(self, key: ObjectKey, view: ResourceView, indexes: Indexes) -> None:
        """Judge an EnclaveContainer's replicas now if its policy just changed."""
        current = self._policy(view)
        if current is None:
            return
        previous = self._seen.get(key)
        self._seen[key] = current[1]
        if previous is None or previous == current[1] or key not in indexes.attestation:
            return
        await self._sweep_one(key, view, current, indexes, datetime.now(UTC))

    async def _sweep_one(
        self,
        key: ObjectKey,
        view: ResourceView,
        current: tuple[AttestationPolicy, str, int],
        indexes: Indexes,
        now: datetime,
    ) -> None:
        policy, digest, replicas = current
        health, reachable_since = self._health()
        grace = self._settings.reattest_grace_seconds
        replacements: list[tuple[ReplicaAttestation, Action]] = []
        for replica in list(indexes.attestation.get(key, ())):
            action = decide(
                replica,
                policy,
                digest,
                now,
                grace,
                reachable_since=reachable_since,
                reachable=health.reachable,
                expiry=self._settings.attestation_expiry,
            )
            if action is None:
                await self._follow_renewal(key, view, replica, health.reachable, now)
                continue
            if action.kind == "replace":
                replacements.append((replica, action))
            else:
                await self._act(view, replica, action, now)
        if replacements:
            deployment: DeploymentView | None = one(indexes.deployments, key)
            pods: list[PodView] = list(indexes.pods.get(key, ()))
            await self._replace(
                view,
                replacements,
                deployment=deployment,
                pods=pods,
                health=health,
                now=now,
                desired=replicas,
            )

    async def _follow_renewal(
        self,
        key: ObjectKey,
        view: ResourceView,
        replica: ReplicaAttestation,
        reachable: bool,
        now: datetime,
    ) -> None:
        """Say when a replica stops renewing its attestation, and when it renews again."""
        if not reachable:
            # AttestationUnavailable says why already; the clock restarts when it answers.
            self.renewals.excuse(replica, now)
            return
        silent = self.renewals.silent_seconds(replica, now)
        change = self.renewals.observe(replica, now)
        if change is not None:
            self._renewal_changed(key)
        if change == "overdue":
            until = replica.attested_until.isoformat() if replica.attested_until else "?"
            logger.warning(
                "pod %s/%s: no renewed attestation for %.0fs",
                replica.namespace,
                replica.name,
                silent,
            )
            await self._post(
                _ref(view),
                "Warning",
                REATTESTATION_OVERDUE,
                f"pod {replica.name} has not renewed its attestation for {silent:.0f}s "
                f"(runtimes renew every 120s) while the attestation service answers; it "
                f"expires at {until}. Its runtime's log says why: kubectl logs -n "
                f"{replica.namespace} {replica.name} -c {RUNTIME_CONTAINER}",
            )
        elif change == "resumed":
            await self._post(
                _ref(view),
                "Normal",
                "ReattestationResumed",
                f"pod {replica.name} renewed its attestation again",
            )

    async def _replace(
        self,
        view: ResourceView,
        replacements: Sequence[tuple[ReplicaAttestation, Action]],
        *,
        deployment: DeploymentView | None,
        pods: Sequence[PodView],
        health: ServiceHealth,
        now: datetime,
        desired: int,
    ) -> None:
        if deployment is None:
            return  # nothing would bring a replacement; the reconciler restores it first
        # Pods this process already evicted count as going, even before the watch says so.
        going = {name for name, _ in self._evicted.values()}
        seen = [
            dataclasses.replace(pod, terminating=True) if pod.name in going else pod for pod in pods
        ]
        by_name = {
            replica.name: (replica, action)
            for replica, action in replacements
            if replica.uid not in self._evicted
        }
        plan = plan_replacements(
            list(by_name),
            desired=desired,
            max_unavailable=deployment.max_unavailable,
            pods=seen,
            service=health,
        )
        if plan.waiting:
            logger.info(
                "%s/%s: replacing %s later: %s",
                view.namespace,
                view.name,
                ", ".join(plan.waiting),
                plan.why_waiting,
            )
        for name in plan.evict:
            replica, action = by_name[name]
            await self._evict(view, replica, action, now)

    async def _remove_refused(self, view: ResourceView, pods: Collection[PodView]) -> None:
        """Remove replicas their kubelet refused at admission (say, while its quoting
        service restarted): the ReplicaSet has replaced them, and Kubernetes would leave
        them Failed in ``kubectl get pods`` for good."""
        for pod in list(pods):
            if not pod.admission_refusal or pod.terminating:
                continue
            # A terminal pod's eviction is a plain deletion: no budget is consulted.
            outcome, status = await request_eviction(self._core, pod.namespace, pod.name)
            if outcome is EvictionOutcome.GONE:
                continue
            if outcome is not EvictionOutcome.EVICTED:
                logger.warning("pod %s/%s: removing it failed: %s", pod.namespace, pod.name, status)
                continue
            logger.info("pod %s/%s: removed, refused by node %s", pod.namespace, pod.name, pod.node)
            await self._post(
                _ref(view),
                "Warning",
                "ReplicaRefusedByNode",
                f"pod {pod.name} was refused by node {pod.node or '(none)'} at admission "
                f"({pod.admission_refusal}); its ReplicaSet replaced it and the refused pod "
                "was removed",
            )

    def _forget_old_evictions(self, now: datetime) -> None:
        for uid, (_, when) in list(self._evicted.items()):
            if (now - when).total_seconds() > _EVICTION_MEMORY_SECONDS:
                del self._evicted[uid]

    async def _evict(
        self, view: ResourceView, replica: ReplicaAttestation, action: Action, now: datetime
    ) -> None:
        """Evict the replica; only once the apiserver took the eviction, say why."""
        ref = _ref(view)
        outcome, status = await request_eviction(self._core, replica.namespace, replica.name)
        if outcome is EvictionOutcome.RETRY_LATER:
            if replica.uid not in self._blocked:
                self._blocked.add(replica.uid)
                logger.info(
                    "pod %s/%s: eviction refused for now (a PodDisruptionBudget); retrying",
                    replica.namespace,
                    replica.name,
                )
                await self._post(
                    ref,
                    "Normal",
                    "ReplacementDelayed",
                    f"pod {replica.name} is to be replaced ({action.reason}) but a "
                    "PodDisruptionBudget allows no eviction now; retrying",
                )
            return
        if outcome is EvictionOutcome.FAILED:
            logger.warning(
                "pod %s/%s: eviction failed with HTTP %s; retrying",
                replica.namespace,
                replica.name,
                status,
            )
            return
        self._blocked.discard(replica.uid)
        if outcome is EvictionOutcome.GONE:
            return
        self._evicted[replica.uid] = (replica.name, now)
        logger.info(
            "pod %s/%s: evicted to replace it (%s)", replica.namespace, replica.name, action.reason
        )
        try:
            await self._withdraw(replica, action, now)
        except client.ApiException as error:
            if error.status != 404:
                logger.warning(
                    "pod %s/%s: withdrawing its attestation failed: %s",
                    replica.namespace,
                    replica.name,
                    error.status,
                )
        await self._post(ref, "Warning", action.reason, action.message)

    async def _post(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        try:
            await self._writer.post_event(ref, type_, reason, message)
        except (ApiError, ApiUnavailableError) as error:
            logger.warning("could not post Event %s about %s: %s", reason, ref.name, error)

    async def _act(
        self, view: ResourceView, replica: ReplicaAttestation, action: Action, now: datetime
    ) -> None:
        """Ask the replica to re-attest, or withdraw an attestation that no longer holds."""
        ref = _ref(view)
        try:
            if action.kind == "request":
                await self._core.patch_namespaced_pod(
                    replica.name,
                    replica.namespace,
                    {"metadata": {"annotations": {REATTEST_ANNOTATION: action.request}}},
                    _content_type=_MERGE_PATCH,
                )
                await self._writer.post_event(ref, "Normal", action.reason, action.message)
            else:
                await self._withdraw(replica, action, now)
                await self._writer.post_event(ref, "Warning", action.reason, action.message)
        except client.ApiException as error:
            if error.status != 404:  # a pod already gone needs nothing more
                logger.warning(
                    "pod %s/%s: %s failed: %s %s",
                    replica.namespace,
                    replica.name,
                    action.kind,
                    error.status,
                    error.reason,
                )
        except (ApiError, ApiUnavailableError) as error:
            logger.warning("attestation upkeep of pod %s: %s", replica.name, error)
        else:
            logger.info(
                "pod %s/%s: %s (%s)", replica.namespace, replica.name, action.kind, action.reason
            )

    async def _withdraw(self, replica: ReplicaAttestation, action: Action, now: datetime) -> None:
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        await self._core.patch_namespaced_pod_status(
            replica.name,
            replica.namespace,
            {
                "status": {
                    "conditions": [
                        {
                            "type": ATTESTED_CONDITION,
                            "status": "False",
                            "reason": action.reason,
                            "message": action.message,
                            "lastProbeTime": stamp,
                            "lastTransitionTime": stamp,
                        }
                    ]
                }
            },
            _content_type=_STRATEGIC_MERGE_PATCH,
        )

    def _policy(self, view: ResourceView) -> tuple[AttestationPolicy, str, int] | None:
        key = (view.uid, view.generation)
        if key not in self._policies:
            try:
                spec = EnclaveContainerSpec.model_validate(view.spec)
                policy = spec.attestation.policy
                self._policies[key] = (policy, policy_hash(policy), spec.replicas)
            except ValidationError:
                self._policies[key] = None  # InvalidSpec is the reconciler's to report
        return self._policies[key]


def _ref(view: ResourceView) -> ObjectRef:
    return ObjectRef(API_VERSION, "EnclaveContainer", view.name, view.namespace, view.uid)
