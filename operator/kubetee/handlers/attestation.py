"""Replicas' attestation upkeep (:mod:`kubetee.reconcile.attestation_upkeep`): its index
of each replica's attestation facts, its start and stop, and the EnclaveContainer events
that judge an EnclaveContainer's replicas at once when its policy changes (so replicas
the new policy refuses are replaced before anything else happens, such as the rollout of
a new enclave version)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import kopf

from kubetee.api.v1alpha1 import VERSION
from kubetee.attestation_service.names import EC_LABEL
from kubetee.attestation_service.replicas import ReplicaAttestation, replica_attestation
from kubetee.controller.names import EC_PLURAL, GROUP
from kubetee.controller.service_health import REACHABLE, ServiceHealth
from kubetee.controller.views import resource_view
from kubetee.k8s.client import connect
from kubetee.reconcile.attestation_upkeep import AttestationUpkeep, Indexes, UpkeepSettings
from kubetee.reconcile.caches import ObjectKey
from kubetee.reconcile.runtime import OperatorRuntime


@kopf.index("", "v1", "pods", labels={EC_LABEL: kopf.PRESENT}, id="attestation_replicas")
async def attestation_replicas(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[ObjectKey, ReplicaAttestation]:
    return {(namespace or "", labels[EC_LABEL]): replica_attestation(body)}


def _indexes(kwargs: dict[str, Any]) -> Indexes:
    return Indexes(
        attestation=kwargs["attestation_replicas"],
        enclave_containers=kwargs["ec_index"],
        pods=kwargs["replica_index"],
        deployments=kwargs["deployment_index"],
    )


@kopf.on.startup()
async def start_attestation_upkeep(memo: kopf.Memo, **kwargs: Any) -> None:
    def health() -> tuple[ServiceHealth, datetime | None]:
        runtime: OperatorRuntime | None = memo.get("runtime")
        if runtime is None:  # not started yet
            return REACHABLE, None
        return runtime.attestation.health, runtime.attestation.reachable_since

    upkeep = AttestationUpkeep(await connect(), UpkeepSettings(), health)
    memo["attestation_upkeep"] = upkeep
    upkeep.task = asyncio.create_task(upkeep.sweep_forever(_indexes(kwargs)))


@kopf.on.event(GROUP, VERSION, EC_PLURAL)
async def policy_changed(
    body: kopf.Body,
    type: str,  # kopf's argument name
    namespace: str | None,
    name: str,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    upkeep: AttestationUpkeep | None = memo.get("attestation_upkeep")
    if upkeep is None or type == "DELETED":
        return
    await upkeep.policy_event((namespace or "", name), resource_view(body), _indexes(kwargs))


@kopf.on.cleanup()
async def stop_attestation_upkeep(memo: kopf.Memo, **_: Any) -> None:
    upkeep: AttestationUpkeep | None = memo.get("attestation_upkeep")
    if upkeep is not None:
        await upkeep.close()
