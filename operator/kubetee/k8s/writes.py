"""Every write the operator makes, each mapped onto the error hierarchy and counted.

The operator reads only through kopf's watches (its indexes); these few calls are the
whole of its API traffic besides them, which keeps it countable per EnclaveContainer.
The frequent ones take the apiserver's answer without building the client's models of it
(the written object, which the watches deliver anyway): that deserialization was about
a twelfth of the operator's CPU under load (py-spy, ``benchmarks/operator_scale.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException
from prometheus_client import Counter

from kubetee.controller.names import FIELD_MANAGER, GROUP
from kubetee.k8s.errors import ApiNotFoundError, mapped

API_VERSION = "v1alpha1"

REQUESTS = Counter(
    "kubetee_operator_api_writes",
    "API write requests made by the operator (watches not included).",
    ["verb", "resource"],
)

_MERGE_PATCH = "application/merge-patch+json"
_APPLY_PATCH = "application/apply-patch+yaml"


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """What an Event is about."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str


def event_body(
    ref: ObjectRef, type_: str, reason: str, message: str, now: datetime
) -> tuple[str, client.CoreV1Event]:
    """The namespace and body of the Event the operator posts about ``ref`` (also what
    the write-cost benchmark measures)."""
    now = now.replace(microsecond=0)
    # Events of cluster-scoped objects live in "default", where kubectl describe looks.
    namespace = ref.namespace or "default"
    return namespace, client.CoreV1Event.model_validate(
        {
            "metadata": {"generateName": f"{ref.name}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": ref.api_version,
                "kind": ref.kind,
                "name": ref.name,
                "namespace": ref.namespace or None,
                "uid": ref.uid,
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "reportingInstance": FIELD_MANAGER,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
    )


async def answered(response: aiohttp.ClientResponse) -> None:
    """Read the answer (which releases the connection) and raise a failure as the
    client would have: an ``ApiException`` with the status, reason, body and headers."""
    body = await response.read()
    if not 200 <= response.status <= 299:
        error = ApiException(
            status=response.status,
            reason=response.reason,
            body=body.decode("utf-8", errors="replace"),
        )
        error.headers = response.headers
        raise error


class Writer(Protocol):
    """The writes the reconcilers need (a recording fake stands in for it in tests)."""

    async def apply_deployment(self, manifest: dict[str, Any]) -> None: ...

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> None: ...

    async def post_event(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None: ...

    async def apply_quota(self, manifest: dict[str, Any]) -> None: ...

    async def apply_disruption_budget(self, manifest: dict[str, Any]) -> None: ...

    async def delete_disruption_budget(self, namespace: str, name: str) -> None: ...

    async def delete_stale_quotas(
        self, label_selector: str, name: str, keep: set[str]
    ) -> list[str]: ...


class KubeWriter:
    """``Writer`` over the asyncio Kubernetes client."""

    def __init__(self, api_client: Any) -> None:
        self._apps = client.AppsV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._policy = client.PolicyV1Api(api_client)

    @mapped("applying the Deployment")
    async def apply_deployment(self, manifest: dict[str, Any]) -> None:
        REQUESTS.labels("apply", "deployments").inc()
        metadata = manifest["metadata"]
        await answered(
            await self._apps.patch_namespaced_deployment_without_preload_content(
                name=metadata["name"],
                namespace=metadata["namespace"],
                body=manifest,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type=_APPLY_PATCH,
            )
        )

    @mapped("writing the status")
    async def patch_status(
        self, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        REQUESTS.labels("patch", f"{plural}/status").inc()
        body = {"status": status}
        if namespace:
            response = (
                await self._custom.patch_namespaced_custom_object_status_without_preload_content(
                    GROUP, API_VERSION, namespace, plural, name, body, _content_type=_MERGE_PATCH
                )
            )
        else:
            response = (
                await self._custom.patch_cluster_custom_object_status_without_preload_content(
                    GROUP, API_VERSION, plural, name, body, _content_type=_MERGE_PATCH
                )
            )
        await answered(response)

    @mapped("posting an Event")
    async def post_event(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        REQUESTS.labels("create", "events").inc()
        namespace, event = event_body(ref, type_, reason, message, datetime.now(UTC))
        await answered(
            await self._core.create_namespaced_event_without_preload_content(namespace, event)
        )

    @mapped("applying the PodDisruptionBudget")
    async def apply_disruption_budget(self, manifest: dict[str, Any]) -> None:
        REQUESTS.labels("apply", "poddisruptionbudgets").inc()
        metadata = manifest["metadata"]
        await self._policy.patch_namespaced_pod_disruption_budget(
            name=metadata["name"],
            namespace=metadata["namespace"],
            body=manifest,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=_APPLY_PATCH,
        )

    @mapped("deleting the PodDisruptionBudget")
    async def delete_disruption_budget(self, namespace: str, name: str) -> None:
        REQUESTS.labels("delete", "poddisruptionbudgets").inc()
        try:
            await self._policy.delete_namespaced_pod_disruption_budget(name, namespace)
        except client.ApiException as error:
            if error.status != 404:  # already gone is what was wanted
                raise

    @mapped("applying a ResourceQuota")
    async def apply_quota(self, manifest: dict[str, Any]) -> None:
        REQUESTS.labels("apply", "resourcequotas").inc()
        metadata = manifest["metadata"]
        await self._core.patch_namespaced_resource_quota(
            name=metadata["name"],
            namespace=metadata["namespace"],
            body=manifest,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=_APPLY_PATCH,
        )

    @mapped("deleting stale ResourceQuotas")
    async def delete_stale_quotas(
        self, label_selector: str, name: str, keep: set[str]
    ) -> list[str]:
        """Delete the quotas ``name`` matching ``label_selector`` outside namespaces ``keep``."""
        REQUESTS.labels("list", "resourcequotas").inc()
        found = await self._core.list_resource_quota_for_all_namespaces(
            label_selector=label_selector
        )
        deleted = []
        for quota in found.items:
            metadata = quota.metadata
            if metadata is None or metadata.namespace is None or metadata.name != name:
                continue
            namespace = metadata.namespace
            if namespace in keep:
                continue
            REQUESTS.labels("delete", "resourcequotas").inc()
            try:
                await self._core.delete_namespaced_resource_quota(name, namespace)
            except ApiNotFoundError:
                continue
            deleted.append(namespace)
        return deleted
