"""What an attestation reads from the cluster, kept in memory by watches.

Replicas of EnclaveContainers (pods with the ``kubetee.io/enclave-container`` label),
EnclaveContainers (their policy parsed once per change) and Secrets (only their data;
in every namespace, or only in ``--secret-namespaces``): one list and one watch each,
so an attestation reads no object from the apiserver. A deleted pod, a changed policy or
Secret takes effect when the watch delivers it; until every cache has synced (and
whenever one has lost its watch) attestations are refused (fail closed) and /readyz says
why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from pydantic import ValidationError

from kubetee.api.v1alpha1 import GROUP, VERSION, EnclaveContainerSpec
from kubetee.attestation_service.names import EC_LABEL, EC_PLURAL
from kubetee.attestation_service.watch_cache import WatchCache
from kubetee.attestation_service.workloads import EnclaveContainerView

_RAW: dict[str, Any] = {"_preload_content": False}


@dataclass(frozen=True, slots=True)
class InvalidEnclaveContainer:
    """An EnclaveContainer whose spec does not validate: nothing attests against it."""

    namespace: str
    name: str


def _pod(body: dict[str, Any]) -> dict[str, Any]:
    # Only what an attestation reads: a pod's spec and status are mostly something else.
    metadata = body.get("metadata") or {}
    return {
        "metadata": {
            k: metadata[k]
            for k in ("name", "namespace", "uid", "labels", "annotations", "deletionTimestamp")
            if k in metadata
        },
        "spec": {"nodeName": (body.get("spec") or {}).get("nodeName")},
        "status": {"conditions": (body.get("status") or {}).get("conditions") or []},
    }


def _enclave_container(body: dict[str, Any]) -> EnclaveContainerView | InvalidEnclaveContainer:
    metadata = body["metadata"]
    namespace, name = metadata.get("namespace") or "", metadata["name"]
    try:
        spec = EnclaveContainerSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return InvalidEnclaveContainer(namespace, name)
    return EnclaveContainerView.from_spec(namespace, name, metadata["uid"], spec)


def _secret_data(body: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (body.get("data") or {}).items()}


class ClusterCache:
    """The pod, EnclaveContainer and Secret caches of one service process."""

    def __init__(self, api_client: Any, secret_namespaces: Sequence[str] = ()) -> None:
        core = client.CoreV1Api(api_client)
        custom = client.CustomObjectsApi(api_client)
        self.pods: WatchCache[dict[str, Any]] = WatchCache(
            "pod",
            lambda: core.list_pod_for_all_namespaces(label_selector=EC_LABEL, **_RAW),
            lambda version, timeout, read_timeout: core.list_pod_for_all_namespaces(
                label_selector=EC_LABEL,
                watch=True,
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout,
                _request_timeout=read_timeout,
                **_RAW,
            ),
            _pod,
        )
        self.enclave_containers: WatchCache[EnclaveContainerView | InvalidEnclaveContainer] = (
            WatchCache(
                "EnclaveContainer",
                lambda: custom.list_cluster_custom_object(GROUP, VERSION, EC_PLURAL, **_RAW),
                lambda version, timeout, read_timeout: custom.list_cluster_custom_object(
                    GROUP,
                    VERSION,
                    EC_PLURAL,
                    watch=True,
                    resource_version=version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=timeout,
                    _request_timeout=read_timeout,
                    **_RAW,
                ),
                _enclave_container,
            )
        )
        self.secrets: dict[str | None, WatchCache[dict[str, str]]] = {}
        if not secret_namespaces:
            self.secrets[None] = WatchCache(
                "Secret",
                lambda: core.list_secret_for_all_namespaces(**_RAW),
                lambda version, timeout, read_timeout: core.list_secret_for_all_namespaces(
                    watch=True,
                    resource_version=version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=timeout,
                    _request_timeout=read_timeout,
                    **_RAW,
                ),
                _secret_data,
            )
        for namespace in secret_namespaces:
            self.secrets[namespace] = _namespaced_secrets(core, namespace)

    @classmethod
    def of(cls, pods: Any, enclave_containers: Any, secrets: Any) -> ClusterCache:
        """Caches made elsewhere (tests): ``secrets`` serves every namespace."""
        cache = cls.__new__(cls)
        cache.pods, cache.enclave_containers, cache.secrets = pods, enclave_containers, {}
        cache.secrets[None] = secrets
        return cache

    def caches(self) -> list[WatchCache[Any]]:
        return [self.pods, self.enclave_containers, *self.secrets.values()]

    def secrets_of(self, namespace: str) -> WatchCache[dict[str, str]] | None:
        """The cache holding that namespace's Secrets, None when none is watched there."""
        return self.secrets.get(None) or self.secrets.get(namespace)

    def start(self) -> None:
        for cache in self.caches():
            cache.start()

    def stop(self) -> None:
        for cache in self.caches():
            cache.stop()

    async def problem(self) -> str | None:
        """Why attestations are refused now (a cache not synced), or None."""
        behind = [cache.kind for cache in self.caches() if not cache.synced]
        if behind:
            return (
                f"the service's view of {', '.join(sorted(set(behind)))} objects is not synced "
                "with the Kubernetes API yet (or lost its watch); it retries on its own"
            )
        return None


def _namespaced_secrets(core: Any, namespace: str) -> WatchCache[dict[str, str]]:
    return WatchCache(
        f"Secret ({namespace})",
        lambda: core.list_namespaced_secret(namespace, **_RAW),
        lambda version, timeout, read_timeout: core.list_namespaced_secret(
            namespace,
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout,
            _request_timeout=read_timeout,
            **_RAW,
        ),
        _secret_data,
    )
