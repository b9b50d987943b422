"""TCB recovery in the operator: node labels from the newest TCB evaluation, and replicas
moved off platforms their policy no longer accepts (:mod:`kubetee.tcb`).

Every ``KUBETEE_TCB_SWEEP_SECONDS`` the sweep reads the PCS's platform registry, judges
each registered node's platform by the newest trusted TCB Info of its family (renewed at
least every ``KUBETEE_TCB_REFRESH_SECONDS``), writes the node labels that changed (an
Event on the Node says what changed), then judges every attested replica with its node's
status (:func:`kubetee.tcb.recovery.judge_replica`) and acts: pending (deadline
annotation and condition), moved (eviction within the Deployment's budget and the
PodDisruptionBudget, as :mod:`kubetee.controller.replacement` plans it), withdrawn at
the deadline, recovered. Each step is an Event on the EnclaveContainer and counted in
``kubetee_tcb_recovery_steps_total``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from kubernetes.aio import client
from pydantic import ValidationError

from kubetee.api.v1alpha1 import API_VERSION, EnclaveContainerSpec
from kubetee.attestation_service.names import ATTESTED_CONDITION, REATTEST_ANNOTATION
from kubetee.controller.replacement import EvictionOutcome, plan_replacements
from kubetee.controller.service_health import ServiceHealth
from kubetee.controller.views import DeploymentView, NodeView, PodView, ResourceView
from kubetee.k8s.errors import ApiError, ApiUnavailableError
from kubetee.k8s.writes import REQUESTS, KubeWriter, ObjectRef
from kubetee.pcs.registry import ConfigMapRegistry, PlatformRecord, RegistryUnavailableError
from kubetee.reconcile.caches import ObjectKey, one
from kubetee.reconcile.eviction import request_eviction
from kubetee.reconcile.sweeper import Sweeper
from kubetee.tcb.facts import PlatformTcb, node_patch
from kubetee.tcb.metrics import TcbMetrics
from kubetee.tcb.names import (
    DEADLINE_ANNOTATION,
    PENDING_CONDITION,
    STATE_ANNOTATION,
    TCB_EVALUATION_LABEL,
    TCB_STATUS_LABEL,
    WITHDRAWN,
)
from kubetee.tcb.recovery import TcbReplica, Verdict, format_time, judge_replica
from kubetee.tcb.settings import TcbSettings
from kubetee.tcb.source import TcbEvaluations

logger = logging.getLogger(__name__)

_MERGE_PATCH = "application/merge-patch+json"
_STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
_EVICTION_MEMORY_SECONDS = 60.0

Health = Callable[[], tuple[ServiceHealth, datetime | None]]


@dataclasses.dataclass(frozen=True, slots=True)
class TcbIndexes:
    """kopf's indexes the sweep reads."""

    replicas: Mapping[ObjectKey, Collection[TcbReplica]]
    enclave_containers: Mapping[ObjectKey, Any]
    pods: Mapping[ObjectKey, Any]
    deployments: Mapping[ObjectKey, Any]
    nodes: Mapping[str, Collection[NodeView]]


class TcbUpkeep(Sweeper[TcbIndexes]):
    def __init__(  # noqa: PLR0917 - its collaborators, each a seam for tests
        self,
        api_client: Any,
        settings: TcbSettings,
        evaluations: TcbEvaluations,
        registry: ConfigMapRegistry,
        health: Health,
        metrics: TcbMetrics,
    ) -> None:
        super().__init__(api_client, settings.tcb_sweep_seconds, "TCB recovery")
        self._core = client.CoreV1Api(api_client)
        self._writer = KubeWriter(api_client)
        self._settings = settings
        self._evaluations = evaluations
        self._registry = registry
        self._health = health
        self._metrics = metrics
        self._policies: dict[tuple[str, int], tuple[Any, int] | None] = {}
        self._evicted: dict[str, tuple[str, datetime]] = {}
        self._blocked: set[str] = set()
        self._registry_failing = False
        self._statuses_seen: set[str] = set()

    async def sweep(self, indexes: TcbIndexes, now: datetime) -> None:
        records = await self._records()
        if records is None:
            return
        judged = await self._evaluations.judge(records, now)
        facts = {f.node: f for f in judged}
        for fmspc, number in {(f.fmspc, f.evaluation) for f in judged}:
            self._metrics.evaluation.labels(fmspc).set(number)
        await self._label_nodes(indexes.nodes, facts)
        for key in list(indexes.replicas):
            view = one(indexes.enclave_containers, key)
            if view is not None:
                await self._recover(key, view, indexes, facts, now)
        self._count(indexes)
        for uid, (_, when) in list(self._evicted.items()):
            if (now - when).total_seconds() > _EVICTION_MEMORY_SECONDS:
                del self._evicted[uid]

    async def _records(self) -> list[PlatformRecord] | None:
        try:
            _, data = await asyncio.to_thread(self._registry.read)
        except RegistryUnavailableError as error:
            if not self._registry_failing:
                logger.warning("TCB recovery paused: %s", error)
            self._registry_failing = True
            return None
        self._registry_failing = False
        records = (PlatformRecord.from_json(text) for text in data.values())
        return [record for record in records if record is not None]

    def _count(self, indexes: TcbIndexes) -> None:
        by_status = Counter(
            node.labels.get(TCB_STATUS_LABEL, "")
            for nodes in indexes.nodes.values()
            for node in nodes
            if node.labels.get(TCB_STATUS_LABEL)
        )
        for status in self._statuses_seen | set(by_status):
            self._metrics.nodes.labels(status).set(by_status.get(status, 0))
        self._statuses_seen |= set(by_status)
        states = Counter(
            "pending" if replica.deadline and not replica.withdrawn else WITHDRAWN
            for replicas in indexes.replicas.values()
            for replica in replicas
            if replica.deadline or replica.withdrawn
        )
        for state in ("pending", WITHDRAWN):
            self._metrics.replicas.labels(state).set(states.get(state, 0))

    async def _label_nodes(
        self, nodes: Mapping[str, Collection[NodeView]], facts: Mapping[str, PlatformTcb]
    ) -> None:
        for name, judged in facts.items():
            node = one(nodes, name)
            if node is None:
                continue  # registered, but not (or no longer) a node
            patch = node_patch(node.labels, judged)
            if patch is None:
                continue
            REQUESTS.labels("patch", "nodes").inc()
            try:
                await self._core.patch_node(name, patch, _content_type=_MERGE_PATCH)
            except client.ApiException as error:
                logger.warning("node %s: labelling its TCB failed: %s", name, error.status)
                continue
            before = node.labels.get(TCB_STATUS_LABEL)
            evaluation = node.labels.get(TCB_EVALUATION_LABEL)
            was = f" (was {before} under evaluation {evaluation})" if before else ""
            advisories = ", ".join(judged.advisories) or "none"
            logger.info("node %s: SGX TCB %s%s", name, judged.status, was)
            await self._post(
                ObjectRef("v1", "Node", name, "", ""),
                "Normal" if judged.status == "UpToDate" else "Warning",
                "TcbStatusChanged",
                f"node {name}: SGX platform FMSPC {judged.fmspc} ({judged.ca} CA) is "
                f"{judged.status} under TCB evaluation {judged.evaluation}{was}; "
                f"advisories: {advisories}",
            )

    async def _recover(
        self,
        key: ObjectKey,
        view: ResourceView,
        indexes: TcbIndexes,
        facts: Mapping[str, PlatformTcb],
        now: datetime,
    ) -> None:
        current = self._policy(view)
        if current is None:
            return
        policy, replicas = current
        moves: list[tuple[TcbReplica, Verdict]] = []
        for replica in list(indexes.replicas.get(key, ())):
            verdict = judge_replica(
                replica, facts.get(replica.node), policy, policy.tcb_recovery_grace_seconds, now
            )
            if verdict is None:
                continue
            if verdict.kind == "move":
                moves.append((replica, verdict))
            else:
                await self._mark(view, replica, verdict, now)
        if moves:
            deployment: DeploymentView | None = one(indexes.deployments, key)
            pods: list[PodView] = list(indexes.pods.get(key, ()))
            await self._move(view, moves, deployment, pods, replicas, now)

    async def _mark(
        self, view: ResourceView, replica: TcbReplica, verdict: Verdict, now: datetime
    ) -> None:
        """Write a replica's pending, withdrawn or recovered state, then say so."""
        stamp = format_time(now)
        # Pending since it first was: the service bounds the grace by that moment.
        since = format_time(replica.pending_since) if replica.pending_since else stamp
        annotations: dict[str, str | None]
        conditions = [_condition(PENDING_CONDITION, "True", verdict, stamp, since)]
        if verdict.kind == "pending":
            assert verdict.deadline is not None  # noqa: S101 - a pending verdict has one
            annotations = {DEADLINE_ANNOTATION: format_time(verdict.deadline)}
            event_type, step = "Warning", "pending"
        elif verdict.kind == "withdraw":
            # The runtime attests again on this request; the service refuses it (the
            # deadline passed), so the runtime removes the secrets.
            annotations = {
                STATE_ANNOTATION: WITHDRAWN,
                REATTEST_ANNOTATION: f"tcb-recovery@{int(now.timestamp())}",
            }
            conditions.append(_condition(ATTESTED_CONDITION, "False", verdict, stamp))
            event_type, step = "Warning", "withdrawn"
        else:
            annotations = {DEADLINE_ANNOTATION: None, STATE_ANNOTATION: None}
            conditions = [_condition(PENDING_CONDITION, "False", verdict, stamp)]
            event_type, step = "Normal", "recovered"
        try:
            # The condition first: the service grants a deadline only with it.
            REQUESTS.labels("patch", "pods/status").inc()
            await self._core.patch_namespaced_pod_status(
                replica.name,
                replica.namespace,
                {"status": {"conditions": conditions}},
                _content_type=_STRATEGIC_MERGE_PATCH,
            )
            REQUESTS.labels("patch", "pods").inc()
            await self._core.patch_namespaced_pod(
                replica.name,
                replica.namespace,
                {"metadata": {"annotations": annotations}},
                _content_type=_MERGE_PATCH,
            )
        except client.ApiException as error:
            if error.status != 404:
                logger.warning(
                    "pod %s/%s: TCB recovery step %s failed: %s",
                    replica.namespace,
                    replica.name,
                    step,
                    error.status,
                )
            return
        self._metrics.steps.labels(step).inc()
        logger.info("pod %s/%s: TCB recovery %s", replica.namespace, replica.name, step)
        await self._post(_ref(view), event_type, verdict.reason, verdict.message)

    async def _move(  # noqa: PLR0917 - one step of _recover, split for size
        self,
        view: ResourceView,
        moves: Sequence[tuple[TcbReplica, Verdict]],
        deployment: DeploymentView | None,
        pods: Sequence[PodView],
        desired: int,
        now: datetime,
    ) -> None:
        if deployment is None:
            return
        health: ServiceHealth = self._health()[0]
        going = {name for name, _ in self._evicted.values()}
        seen = [dataclasses.replace(p, terminating=True) if p.name in going else p for p in pods]
        by_name = {r.name: (r, v) for r, v in moves if r.uid not in self._evicted}
        plan = plan_replacements(
            list(by_name),
            desired=desired,
            max_unavailable=deployment.max_unavailable,
            pods=seen,
            service=health,
        )
        if plan.waiting:
            logger.info(
                "%s/%s: moving %s later: %s",
                view.namespace,
                view.name,
                ", ".join(plan.waiting),
                plan.why_waiting,
            )
        for name in plan.evict:
            replica, verdict = by_name[name]
            await self._evict(view, replica, verdict, now)

    async def _evict(
        self, view: ResourceView, replica: TcbReplica, verdict: Verdict, now: datetime
    ) -> None:
        outcome, status = await request_eviction(self._core, replica.namespace, replica.name)
        if outcome is EvictionOutcome.RETRY_LATER:
            if replica.uid not in self._blocked:
                self._blocked.add(replica.uid)
                await self._post(
                    _ref(view),
                    "Normal",
                    "TcbRecoveryDelayed",
                    f"pod {replica.name} is to be moved off its node but a "
                    "PodDisruptionBudget allows no eviction now; retrying until "
                    f"{format_time(verdict.deadline or now)}",
                )
            return
        if outcome is not EvictionOutcome.EVICTED:
            if outcome is EvictionOutcome.FAILED:
                logger.warning("pod %s: eviction failed with HTTP %s", replica.name, status)
            return
        self._blocked.discard(replica.uid)
        self._evicted[replica.uid] = (replica.name, now)
        self._metrics.steps.labels("moved").inc()
        logger.info(
            "pod %s/%s: evicted to move it (%s)", replica.namespace, replica.name, verdict.message
        )
        await self._post(
            _ref(view),
            "Normal",
            "TcbRecoveryMoved",
            f"{verdict.message}: evicted; its replacement is placed on an accepted node",
        )

    async def _post(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        try:
            await self._writer.post_event(ref, type_, reason, message)
        except (ApiError, ApiUnavailableError, client.ApiException) as error:
            logger.warning("could not post Event %s about %s: %s", reason, ref.name, error)

    def _policy(self, view: ResourceView) -> tuple[Any, int] | None:
        key = (view.uid, view.generation)
        if key not in self._policies:
            try:
                spec = EnclaveContainerSpec.model_validate(view.spec)
                self._policies[key] = (spec.attestation.policy, spec.replicas)
            except ValidationError:
                self._policies[key] = None
        return self._policies[key]


def _condition(
    type_: str, status: str, verdict: Verdict, stamp: str, since: str | None = None
) -> dict[str, str]:
    return {
        "type": type_,
        "status": status,
        "reason": verdict.reason,
        "message": verdict.message[:1024],
        "lastProbeTime": stamp,
        "lastTransitionTime": since or stamp,
    }


def _ref(view: ResourceView) -> ObjectRef:
    return ObjectRef(API_VERSION, "EnclaveContainer", view.name, view.namespace, view.uid)
