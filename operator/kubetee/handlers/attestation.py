"""Replicas' attestation upkeep (:mod:`kubetee.reconcile.attestation_upkeep`): its start
and stop, and the judging of an EnclaveContainer's replicas at once when its policy
changes (its events call :func:`judge_policy` first, so replicas the new policy refuses
are replaced before anything else happens, such as the rollout of a new enclave
version). Each replica's attestation facts are in :mod:`kubetee.handlers.replicas`."""

from __future__ import annotations

from typing import Any

import kopf

from kubetee.controller.views import ResourceView
from kubetee.handlers import replicas
from kubetee.handlers.lifecycle import attestation_health, requeue_status
from kubetee.k8s.client import connect
from kubetee.reconcile.attestation_upkeep import AttestationUpkeep, Indexes, UpkeepSettings
from kubetee.reconcile.caches import ObjectKey


def _indexes(kwargs: dict[str, Any]) -> Indexes:
    return Indexes(
        attestation=replicas.attestations(kwargs),
        enclave_containers=kwargs["ec_index"],
        pods=replicas.pods(kwargs),
        deployments=kwargs["deployment_index"],
    )


@kopf.on.startup()
async def start_attestation_upkeep(memo: kopf.Memo, **kwargs: Any) -> None:
    upkeep = AttestationUpkeep(
        await connect(), UpkeepSettings(), attestation_health(memo), requeue_status(memo)
    )
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
