"""EnclaveContainers and their owned Deployments and PodDisruptionBudgets: indexes and
events (their pods: :mod:`kubetee.handlers.replicas`)."""

from __future__ import annotations

from typing import Any

import kopf

from kubetee.controller.names import EC_LABEL, EC_PLURAL, GROUP
from kubetee.controller.views import (
    DeploymentView,
    DisruptionBudgetView,
    ResourceView,
    deployment_view,
    disruption_budget_view,
    resource_view,
)
from kubetee.handlers.attestation import judge_policy
from kubetee.handlers.lifecycle import runtime_of
from kubetee.reconcile.caches import ObjectKey

_VERSION = "v1alpha1"
_OWNED = {EC_LABEL: kopf.PRESENT}


@kopf.index(GROUP, _VERSION, EC_PLURAL, id="ec_index")
async def ec_index(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> dict[ObjectKey, ResourceView]:
    return {(namespace or "", name): resource_view(body)}


@kopf.on.event(GROUP, _VERSION, EC_PLURAL)
async def ec_event(
    body: kopf.Body,
    type: str,  # kopf's argument name
    namespace: str | None,
    name: str,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    key = (namespace or "", name)
    view = None if type == "DELETED" else resource_view(body)
    if view is not None:
        # First: replicas a new policy refuses are replaced before anything else happens
        # (such as the rollout of a new enclave version).
        await judge_policy(key, view, memo, kwargs)
    runtime_of(memo).enclave_container_changed(view, key)


@kopf.index("apps", "v1", "deployments", labels=_OWNED, id="deployment_index")
async def deployment_index(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> dict[ObjectKey, DeploymentView]:
    return {(namespace or "", name): deployment_view(body)}


@kopf.on.event("apps", "v1", "deployments", labels=_OWNED)
async def deployment_event(body: kopf.Body, type: str, memo: kopf.Memo, **_: Any) -> None:
    runtime_of(memo).deployment_changed(deployment_view(body), deleted=type == "DELETED")


@kopf.index("policy", "v1", "poddisruptionbudgets", labels=_OWNED, id="budget_index")
async def budget_index(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> dict[ObjectKey, DisruptionBudgetView]:
    return {(namespace or "", name): disruption_budget_view(body)}


@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=_OWNED)
async def budget_event(body: kopf.Body, type: str, memo: kopf.Memo, **_: Any) -> None:
    runtime_of(memo).disruption_budget_changed(
        disruption_budget_view(body), deleted=type == "DELETED"
    )
