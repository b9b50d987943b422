"""Reconciling one EPCPool: its EPC accounting in status, its quotas, its members.

The pool's status is recomputed from the nodes and pods in the caches. When a pool's
free EPC changes, the EnclaveContainers of the pool that wait for EPC are queued so
their ``InsufficientEPC`` message names the new figure; when its spec changes (or it
appears or goes), every EnclaveContainer of the pool is queued to re-place its pods.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from kubetee.api.quantity import parse_mebibytes
from kubetee.api.v1alpha1 import API_VERSION, EPCPoolSpec, EPCPoolStatus
from kubetee.api.validation import describe
from kubetee.controller import accounting
from kubetee.controller.conditions import Observed, merge_conditions, transitions
from kubetee.controller.names import EPC_RESOURCE, MANAGED_BY_LABEL, POOL_LABEL, POOL_PLURAL
from kubetee.controller.poolevents import pool_event_message
from kubetee.controller.poolfacts import (
    PoolFacts,
    PoolSelection,
    quotas_condition,
    sharing,
    spec_match,
)
from kubetee.controller.poolstatus import WARNING_REASONS, compute_pool_status
from kubetee.controller.views import ResourceView
from kubetee.k8s.errors import ApiNotFoundError, ApiRefusedError
from kubetee.k8s.writes import ObjectRef, Writer
from kubetee.metrics.operator import operator_metrics
from kubetee.reconcile.caches import Caches, ObjectKey, one
from kubetee.reconcile.enclavecontainers import Clock, utcnow

logger = logging.getLogger(__name__)


def quota_name(pool: str) -> str:
    """Name of the ResourceQuota a pool keeps in each namespace it has a quota for."""
    return f"kubetee-epc-{pool}"


def quota_manifest(pool: ResourceView, namespace: str, epc_mib: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {
            "name": quota_name(pool.name),
            "namespace": namespace,
            "labels": {POOL_LABEL: pool.name, MANAGED_BY_LABEL: "kubetee"},
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "EPCPool",
                    "name": pool.name,
                    "uid": pool.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {"hard": {f"requests.{EPC_RESOURCE}": str(epc_mib)}},
    }


def _pool_of(view: ResourceView) -> str:
    pool_ref = view.spec.get("poolRef")
    return str(pool_ref.get("name", "")) if isinstance(pool_ref, dict) else ""


def _waits_for_epc(view: ResourceView) -> bool:
    for condition in view.status.get("conditions") or ():
        if condition.get("type") == "Scheduled" and condition.get("reason") == "InsufficientEPC":
            return True
    return False


class EPCPoolReconciler:
    """Converges one EPCPool at a time; keys are pool names."""

    def __init__(
        self,
        caches: Caches,
        writer: Writer,
        requeue_enclave_container: Callable[[ObjectKey], None],
        clock: Clock = utcnow,
    ) -> None:
        self._caches = caches
        self._writer = writer
        self._requeue = requeue_enclave_container
        self._clock = clock
        self._free: dict[str, accounting.FreeEPC] = {}
        self._generation: dict[str, tuple[str, int]] = {}
        self._written: dict[str, tuple[str, EPCPoolStatus]] = {}
        # Namespaces whose quota this process applied, by pool: ((uid, generation), names).
        self._quotas: dict[str, tuple[tuple[str, int], set[str]]] = {}

    def free(self, pool: str) -> accounting.FreeEPC | None:
        """The pool's free EPC as last computed (what its status says)."""
        return self._free.get(pool)

    def _requeue_members(self, pool: str, only_waiting: bool) -> None:
        for view in self._caches.all_enclave_containers():
            key = (view.namespace, view.name)
            if _pool_of(view) == pool and (not only_waiting or self._waits_for_epc(key, view)):
                self._requeue(key)

    def _waits_for_epc(self, key: ObjectKey, view: ResourceView) -> bool:
        """Its status says so, or (before that status is written) a replica is Pending for
        EPC: its message names the pool's free EPC, so it must follow every change."""
        return _waits_for_epc(view) or any(
            pod.unschedulable_message for pod in self._caches.replicas.get(key, ())
        )

    async def reconcile(self, name: str) -> None:
        view = one(self._caches.pools, name)
        if view is None:
            if self._generation.pop(name, None) is not None:
                self._requeue_members(name, only_waiting=False)  # now PoolNotFound
            self._free.pop(name, None)
            self._written.pop(name, None)
            self._quotas.pop(name, None)
            operator_metrics().forget_pool(name)
            return
        try:
            spec = EPCPoolSpec.model_validate(view.spec)
        except ValidationError as error:
            await self._write_invalid(view, describe(error))
            return
        # Quotas follow the spec and the namespaces as they come and go (raises to retry
        # before the spec counts as seen).
        quotas = await self._apply_quotas(view, spec)
        if self._generation.get(name) != (view.uid, view.generation):
            self._generation[name] = (view.uid, view.generation)
            self._requeue_members(name, only_waiting=False)
        nodes = accounting.select_nodes(self._caches.all_nodes(), spec.node_selector)
        accounts = accounting.account(nodes, self._caches.pods_on)
        free = accounting.free_epc(accounts)
        if self._free.get(name) != free:
            self._free[name] = free
            self._requeue_members(name, only_waiting=True)
        previous = self._previous(view)
        shared, elsewhere = sharing(
            PoolSelection(name, view.created, spec.node_selector), self._selections(), nodes
        )
        facts = PoolFacts(
            pool=name,
            shared_with=shared,
            counted_elsewhere=elsewhere,
            lost=self._lost_nodes(name),
            spec_match=spec_match(
                accounts,
                parse_mebibytes(spec.epc_per_node) if spec.epc_per_node else None,
                spec.max_enclaves_per_node,
            ),
            quotas=quotas,
        )
        status = compute_pool_status(accounts, view.generation, previous, self._clock(), facts)
        operator_metrics().record_pool(name, status)
        await self._write(
            view,
            previous,
            status,
            lambda reason, message: pool_event_message(reason, message, status, facts, spec),
        )

    def _selections(self) -> list[PoolSelection]:
        selections = []
        for views in self._caches.pools.values():
            for other in views:
                try:
                    selector = EPCPoolSpec.model_validate(other.spec).node_selector
                except ValidationError:
                    continue
                selections.append(PoolSelection(other.name, other.created, selector))
        return selections

    def _lost_nodes(self, pool: str) -> dict[str, int]:
        """Nodes that no longer exist with replicas of ``pool`` still bound there (until
        the pod garbage collector deletes them)."""
        lost: dict[str, int] = {}
        for node, pods in self._caches.pods_by_node.items():
            if one(self._caches.nodes, node) is not None:
                continue
            for pod in pods:
                ec = one(self._caches.enclave_containers, (pod.namespace, pod.enclave_container))
                if ec is not None and _pool_of(ec) == pool:
                    lost[node] = lost.get(node, 0) + 1
        return lost

    def _previous(self, view: ResourceView) -> EPCPoolStatus:
        written = self._written.get(view.name)
        if written is not None and written[0] == view.uid:
            return written[1]
        try:
            return EPCPoolStatus.model_validate(view.status)
        except ValidationError:
            return EPCPoolStatus()

    async def _write_invalid(self, view: ResourceView, message: str) -> None:
        previous = self._previous(view)
        conditions = merge_conditions(
            previous.conditions,
            [Observed("Ready", "False", "InvalidSpec", f"spec is invalid: {message}")],
            view.generation,
            self._clock(),
        )
        status = previous.model_copy(
            update={"conditions": conditions, "observed_generation": view.generation}
        )
        await self._write(view, previous, status)

    async def _write(
        self,
        view: ResourceView,
        previous: EPCPoolStatus,
        status: EPCPoolStatus,
        event_message: Callable[[str, str], str] = lambda reason, message: message,
    ) -> None:
        if status == previous:
            return
        await self._writer.patch_status(POOL_PLURAL, "", view.name, status.model_dump(mode="json"))
        self._written[view.name] = (view.uid, status)
        ref = ObjectRef(API_VERSION, "EPCPool", view.name, "", view.uid)
        events: dict[str, tuple[str, str]] = {}
        gone = [n.name for n in previous.nodes if one(self._caches.nodes, n.name) is None]
        if gone and status.nodes != previous.nodes:
            events["NodeLost"] = (
                "Warning",
                f"node {', '.join(gone)} was deleted: it left the pool",
            )
        for condition in transitions(previous.conditions, status.conditions):
            warning = condition.reason in WARNING_REASONS or condition.reason == "InvalidSpec"
            if warning or condition.status == "True":
                # One Event per cause, even when several conditions share it (Ready).
                events.setdefault(
                    condition.reason,
                    (
                        "Warning" if warning else "Normal",
                        event_message(condition.reason, condition.message),
                    ),
                )
        for reason, (type_, message) in events.items():
            try:
                await self._writer.post_event(ref, type_, reason, message)
            except Exception as error:
                logger.warning("could not post Event for EPCPool %s: %s", view.name, error)

    async def _apply_quotas(self, view: ResourceView, spec: EPCPoolSpec) -> Observed:
        """Apply the quotas not yet applied in namespaces that exist; say what is missing."""
        seen = (view.uid, view.generation)
        remembered = self._quotas.get(view.name)
        new_spec = remembered is None or remembered[0] != seen
        existing = {name for name, phases in self._caches.namespaces.items() if "Active" in phases}
        # A namespace deleted (and perhaps created again) needs its quota again.
        applied = set() if new_spec or remembered is None else remembered[1] & existing
        missing, refused = [], []
        for quota in spec.quotas:
            if quota.namespace not in existing:
                missing.append(quota.namespace)
                continue
            if quota.namespace in applied:
                continue
            manifest = quota_manifest(view, quota.namespace, parse_mebibytes(quota.epc))
            try:
                await self._writer.apply_quota(manifest)
            except ApiNotFoundError:
                missing.append(quota.namespace)
                continue
            except ApiRefusedError as error:
                refused.append(f"namespace {quota.namespace}: {error}")
                continue
            applied.add(quota.namespace)
        if new_spec:
            await self._writer.delete_stale_quotas(
                f"{POOL_LABEL}={view.name}",
                quota_name(view.name),
                {q.namespace for q in spec.quotas},
            )
        self._quotas[view.name] = (seen, applied)
        return quotas_condition(len(applied), missing, refused)
