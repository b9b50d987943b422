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
from kubetee.controller.poolstatus import WARNING_REASONS, compute_pool_status
from kubetee.controller.views import ResourceView
from kubetee.k8s.errors import ApiNotFoundError
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
            operator_metrics().forget_pool(name)
            return
        try:
            spec = EPCPoolSpec.model_validate(view.spec)
        except ValidationError as error:
            await self._write_invalid(view, describe(error))
            return
        if self._generation.get(name) != (view.uid, view.generation):
            await self._apply_quotas(view, spec)  # raises to retry before the spec counts as seen
            self._generation[name] = (view.uid, view.generation)
            self._requeue_members(name, only_waiting=False)
        nodes = accounting.select_nodes(self._caches.all_nodes(), spec.node_selector)
        accounts = accounting.account(nodes, self._caches.pods_on)
        free = accounting.free_epc(accounts)
        if self._free.get(name) != free:
            self._free[name] = free
            self._requeue_members(name, only_waiting=True)
        previous = self._previous(view)
        status = compute_pool_status(accounts, view.generation, previous, self._clock())
        operator_metrics().record_pool(name, status)
        await self._write(view, previous, status)

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
        self, view: ResourceView, previous: EPCPoolStatus, status: EPCPoolStatus
    ) -> None:
        if status == previous:
            return
        await self._writer.patch_status(POOL_PLURAL, "", view.name, status.model_dump(mode="json"))
        self._written[view.name] = (view.uid, status)
        ref = ObjectRef(API_VERSION, "EPCPool", view.name, "", view.uid)
        for condition in transitions(previous.conditions, status.conditions):
            warning = condition.reason in WARNING_REASONS or condition.reason == "InvalidSpec"
            if not warning and condition.status != "True":
                continue
            try:
                await self._writer.post_event(
                    ref, "Warning" if warning else "Normal", condition.reason, condition.message
                )
            except Exception as error:
                logger.warning("could not post Event for EPCPool %s: %s", view.name, error)

    async def _apply_quotas(self, view: ResourceView, spec: EPCPoolSpec) -> None:
        for quota in spec.quotas:
            manifest = quota_manifest(view, quota.namespace, parse_mebibytes(quota.epc))
            try:
                await self._writer.apply_quota(manifest)
            except ApiNotFoundError:
                logger.warning(
                    "EPCPool %s: namespace %s of spec.quotas does not exist (yet)",
                    view.name,
                    quota.namespace,
                )
        await self._writer.delete_stale_quotas(
            f"{POOL_LABEL}={view.name}", quota_name(view.name), {q.namespace for q in spec.quotas}
        )
