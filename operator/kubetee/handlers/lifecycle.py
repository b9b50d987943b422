"""Operator startup and cleanup: kopf's settings, the API client, the runtime."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import kopf

from kubetee.controller.names import EC_LABEL, GROUP
from kubetee.controller.service_health import REACHABLE, ServiceHealth
from kubetee.handlers import replicas
from kubetee.k8s.client import connect
from kubetee.k8s.writes import KubeWriter
from kubetee.reconcile.attestation_upkeep import AttestationUpkeep
from kubetee.reconcile.caches import Caches, ObjectKey
from kubetee.reconcile.runtime import OperatorRuntime
from kubetee.settings import OperatorSettings, load_settings


class NoEssenceDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """Diff-base storage under kubetee.io that skips building each body's essence.

    kopf builds the "essence" of every watched body on every event (a deep copy of the
    whole object) to detect changes for on.create/update/delete handlers. The operator
    registers none of those (only indexes and on.event handlers: its reconcilers are
    level-triggered), so the essence would never be used; at a thousand pods it was
    the largest CPU cost of the operator. Add a change-detecting handler, drop this.
    """

    def build(
        self,
        *,
        body: kopf.Body,
        extra_fields: Any = None,
    ) -> kopf.BodyEssence:
        del body, extra_fields
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        del body
        return None


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """Keep kopf's own marks under kubetee.io and its Events for problems only."""
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = NoEssenceDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # The operator posts its own Events with CamelCase reasons; kopf's per-handler
    # "succeeded" Events would double the API traffic for nothing a user needs.
    settings.posting.level = logging.WARNING
    # The Deployments and budgets the operator owns carry its label (their handlers
    # filter by it): the apiserver filters too, so others' are never sent to it.
    for group, plural in (("apps", "deployments"), ("policy", "poddisruptionbudgets")):
        settings.watching.label_selectors[group, plural] = EC_LABEL
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60


def runtime_of(memo: kopf.Memo) -> OperatorRuntime:
    """The runtime the startup handler put into kopf's memo."""
    runtime: OperatorRuntime = memo["runtime"]
    return runtime


def attestation_health(memo: kopf.Memo) -> Callable[[], tuple[ServiceHealth, datetime | None]]:
    """How the attestation service is doing and since when it answers, as the running
    runtime's probe sees it (reachable until the runtime has started)."""

    def health() -> tuple[ServiceHealth, datetime | None]:
        runtime: OperatorRuntime | None = memo.get("runtime")
        if runtime is None:  # not started yet
            return REACHABLE, None
        return runtime.attestation.health, runtime.attestation.reachable_since

    return health


def requeue_status(memo: kopf.Memo) -> Callable[[ObjectKey], None]:
    """Recompute an EnclaveContainer's status (once the runtime has started)."""

    def requeue(key: ObjectKey) -> None:
        runtime: OperatorRuntime | None = memo.get("runtime")
        if runtime is not None:
            runtime.requeue(key)

    return requeue


def overdue_replicas(memo: kopf.Memo) -> Callable[[], frozenset[tuple[str, str]]]:
    """The replicas the attestation upkeep named overdue, for the status to say so."""

    def overdue() -> frozenset[tuple[str, str]]:
        upkeep: AttestationUpkeep | None = memo.get("attestation_upkeep")
        return frozenset() if upkeep is None else upkeep.renewals.overdue()

    return overdue


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """The service account in a pod, else the kubeconfig named by $KUBECONFIG *now*.

    kopf's default login goes through the kubernetes client, which fixes the kubeconfig
    path when first imported, before ``--kubeconfig`` could set it.
    """
    info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
    return info or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
async def start(
    settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any
) -> None:
    configure_kopf(settings)
    operator_settings: OperatorSettings = memo.get("settings") or load_settings()
    api_client = await connect()
    # kopf hands every handler its indexes by id; these are the live objects it updates.
    caches = Caches(
        enclave_containers=kwargs["ec_index"],
        replicas=replicas.pods(kwargs),
        deployments=kwargs["deployment_index"],
        pools=kwargs["pool_index"],
        nodes=kwargs["node_index"],
        pods_by_node=kwargs["pod_node_index"],
        disruption_budgets=kwargs["budget_index"],
        namespaces=kwargs["namespace_index"],
    )
    runtime = OperatorRuntime(
        caches, KubeWriter(api_client), operator_settings, overdue=overdue_replicas(memo)
    )
    runtime.start()
    memo["runtime"] = runtime
    memo["api_client"] = api_client
    logger.info("KubeTEE operator started")


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    runtime: OperatorRuntime | None = memo.get("runtime")
    if runtime is not None:
        await runtime.stop()
    api_client = memo.get("api_client")
    if api_client is not None:
        await api_client.close()
