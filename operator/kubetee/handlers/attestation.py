"""Replicas' attestation upkeep (:mod:`kubetee.reconcile.attestation_upkeep`): its start
and stop, and the judging of an EnclaveContainer's replicas at once when its policy
changes (its events call :func:`judge_policy` first, so replicas the new policy refuses
are replaced before anything else happens, such as the rollout of a new enclave
version). Each replica's attestation facts are in :mod:`kubetee.handlers.replicas`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import kopf

from kubetee.controller.service_health import REACHABLE, ServiceHealth
from kubetee.controller.views import ResourceView
from kubetee.handlers import replicas
from kubetee.k8s.client import connect
from kubetee.reconcile.attestation_upkeep import AttestationUpkeep, Indexes, UpkeepSettings
from kubetee.reconcile.caches import ObjectKey
from kubetee.reconcile.runtime import OperatorRuntime


def _indexes(kwargs: dict[str, Any]) -> Indexes:
    return Indexes(
        attestation=replicas.attestations(kwargs),
        enclave_containers=kwargs["ec_index"],
        pods=replicas.pods(kwargs),
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
    upkeep.start(_indexes(kwargs))


async def judge_policy(
    key: ObjectKey, view: ResourceView, memo: kopf.Memo, kwargs: dict[str, Any]
) -> None:
    """An EnclaveContainer was listed or changed: judge its replicas if its policy did."""
    upkeep: AttestationUpkeep | None = memo.get("attestation_upkeep")
    if upkeep is not None:
        await upkeep.policy_event(key, view, _indexes(kwargs))


@kopf.on.cleanup()
async def stop_attestation_upkeep(memo: kopf.Memo, **_: Any) -> None:
    upkeep: AttestationUpkeep | None = memo.get("attestation_upkeep")
    if upkeep is not None:
        await upkeep.close()
