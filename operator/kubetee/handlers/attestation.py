"""Replicas' attestation upkeep: re-attest on policy change, replace failures, expire.

A kopf index keeps each replica's attestation facts (condition, attested policy,
validity, pending request); :func:`kubetee.attestation_service.replicas.decide` is
applied to every replica against its EnclaveContainer's current policy by a background
sweep (every ``KUBETEE_ATTESTATION_SWEEP_SECONDS``) and, for one EnclaveContainer, at
once when its policy changes (so replicas the new policy refuses stop counting as
attested before anything else happens, such as the rollout of a new enclave version).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes.aio import client
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from kubetee.api.v1alpha1 import API_VERSION, VERSION, EnclaveContainerSpec
from kubetee.attestation.policy import AttestationPolicy
from kubetee.attestation_service.names import ATTESTED_CONDITION, EC_LABEL, REATTEST_ANNOTATION
from kubetee.attestation_service.replicas import (
    Action,
    ReplicaAttestation,
    decide,
    replica_attestation,
)
from kubetee.attestation_service.workloads import policy_hash
from kubetee.controller.names import EC_PLURAL, GROUP
from kubetee.controller.views import ResourceView, resource_view
from kubetee.k8s.client import connect
from kubetee.k8s.errors import ApiError, ApiUnavailableError
from kubetee.k8s.writes import KubeWriter, ObjectRef
from kubetee.reconcile.caches import ObjectKey

logger = logging.getLogger(__name__)

_MERGE_PATCH = "application/merge-patch+json"
_STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


class UpkeepSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KUBETEE_", extra="ignore")

    attestation_sweep_seconds: float = Field(default=5.0, gt=0)
    reattest_grace_seconds: float = Field(
        default=60.0, gt=0, description="Time a replica has to re-attest after a policy change."
    )


@kopf.index("", "v1", "pods", labels={EC_LABEL: kopf.PRESENT}, id="attestation_replicas")
async def attestation_replicas(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[ObjectKey, ReplicaAttestation]:
    return {(namespace or "", labels[EC_LABEL]): replica_attestation(body)}


@kopf.on.startup()
async def start_attestation_upkeep(memo: kopf.Memo, **kwargs: Any) -> None:
    settings = UpkeepSettings()
    api_client = await connect()
    upkeep = AttestationUpkeep(api_client, settings)
    memo["attestation_upkeep"] = upkeep
    upkeep.task = asyncio.create_task(
        upkeep.sweep_forever(kwargs["attestation_replicas"], kwargs["ec_index"])
    )


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
    await upkeep.policy_event(
        (namespace or "", name), resource_view(body), kwargs["attestation_replicas"]
    )


@kopf.on.cleanup()
async def stop_attestation_upkeep(memo: kopf.Memo, **_: Any) -> None:
    upkeep: AttestationUpkeep | None = memo.get("attestation_upkeep")
    if upkeep is not None:
        await upkeep.close()


class AttestationUpkeep:
    def __init__(self, api_client: Any, settings: UpkeepSettings) -> None:
        self._api_client = api_client
        self._core = client.CoreV1Api(api_client)
        self._writer = KubeWriter(api_client)
        self._settings = settings
        self._policies: dict[tuple[str, int], tuple[AttestationPolicy, str] | None] = {}
        self._seen: dict[ObjectKey, str] = {}
        self.task: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self._api_client.close()

    async def sweep_forever(
        self,
        replicas: Mapping[ObjectKey, Any],
        enclave_containers: Mapping[ObjectKey, Any],
    ) -> None:
        while True:
            await asyncio.sleep(self._settings.attestation_sweep_seconds)
            try:
                await self.sweep(replicas, enclave_containers, datetime.now(UTC))
            except Exception:
                logger.exception("attestation upkeep sweep failed; retrying")

    async def sweep(
        self,
        replicas: Mapping[ObjectKey, Any],
        enclave_containers: Mapping[ObjectKey, Any],
        now: datetime,
    ) -> None:
        for key in list(replicas):
            if key not in enclave_containers:
                continue
            for view in list(enclave_containers[key]):
                current = self._policy(view)
                if current is None:
                    continue
                await self._sweep_one(view, current, list(replicas[key]), now)

    async def policy_event(
        self, key: ObjectKey, view: ResourceView, replicas: Mapping[ObjectKey, Any]
    ) -> None:
        """Judge an EnclaveContainer's replicas now if its policy just changed."""
        current = self._policy(view)
        if current is None:
            return
        previous = self._seen.get(key)
        self._seen[key] = current[1]
        if previous is None or previous == current[1] or key not in replicas:
            return
        await self._sweep_one(view, current, list(replicas[key]), datetime.now(UTC))

    async def _sweep_one(
        self,
        view: ResourceView,
        current: tuple[AttestationPolicy, str],
        replicas: list[ReplicaAttestation],
        now: datetime,
    ) -> None:
        policy, digest = current
        grace = self._settings.reattest_grace_seconds
        for replica in replicas:
            action = decide(replica, policy, digest, now, grace)
            if action is not None:
                await self._act(view, replica, action, now)

    def _policy(self, view: ResourceView) -> tuple[AttestationPolicy, str] | None:
        key = (view.uid, view.generation)
        if key not in self._policies:
            try:
                policy = EnclaveContainerSpec.model_validate(view.spec).attestation.policy
                self._policies[key] = (policy, policy_hash(policy))
            except ValidationError:
                self._policies[key] = None  # InvalidSpec is the reconciler's to report
        return self._policies[key]

    async def _act(
        self, view: ResourceView, replica: ReplicaAttestation, action: Action, now: datetime
    ) -> None:
        ref = ObjectRef(API_VERSION, "EnclaveContainer", view.name, view.namespace, view.uid)
        try:
            if action.kind == "request":
                await self._core.patch_namespaced_pod(
                    replica.name,
                    replica.namespace,
                    {"metadata": {"annotations": {REATTEST_ANNOTATION: action.request}}},
                    _content_type=_MERGE_PATCH,
                )
                await self._writer.post_event(ref, "Normal", action.reason, action.message)
                return
            await self._withdraw(replica, action, now)
            await self._writer.post_event(ref, "Warning", action.reason, action.message)
            if action.kind == "replace":
                await self._core.delete_namespaced_pod(replica.name, replica.namespace)
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
