"""What the server reads from the Kubernetes API: pods, EnclaveContainers, its settings.

The synchronous ``kubernetes`` client runs in worker threads; responses are read as
raw JSON (``_preload_content=False``), which is several times faster than the
client's model objects for pod lists. API failures become the server's own errors
with the object named, so a caller sees ``NotFound`` rather than a stack trace.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kubetee.api.quantity import QuantityError, parse_bytes
from kubetee.metrics.apiserver.auth import CONFIGMAP_NAME, CONFIGMAP_NAMESPACE
from kubetee.metrics.apiserver.scrape import PodRef
from kubetee.metrics.errors import BadRequestError, CustomMetricsError, NotFoundError, UpstreamError

EPC_RESOURCE = "kubetee.io/epc"  # requests count MiB
EC_LABEL = "kubetee.io/enclave-container"
EC_GROUP, EC_VERSION, EC_PLURAL = "kubetee.io", "v1alpha1", "enclavecontainers"
MIB = 1024 * 1024
_RAW: dict[str, Any] = {"_preload_content": False}
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class EnclaveContainerRef:
    namespace: str
    name: str
    selector: str  # the pods' label selector, as the scale subresource publishes it
    requested_bytes: int


def pod_ref(pod: dict[str, Any]) -> PodRef:
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    units = 0  # kubetee.io/epc counts MiB
    for container in containers:
        requests = (container.get("resources") or {}).get("requests") or {}
        raw = requests.get(EPC_RESOURCE)
        if raw is not None:
            try:
                units += int(parse_bytes(str(raw)))
            except QuantityError:
                continue
    return PodRef(
        namespace=str(metadata.get("namespace", "")),
        name=str(metadata.get("name", "")),
        uid=str(metadata.get("uid", "")),
        ip=(pod.get("status") or {}).get("podIP"),
        epc_request_bytes=units * MIB,
        enclave_container=(metadata.get("labels") or {}).get(EC_LABEL),
    )


def enclave_container_ref(body: dict[str, Any]) -> EnclaveContainerRef:
    metadata = body.get("metadata") or {}
    status = body.get("status") or {}
    name = str(metadata.get("name", ""))
    try:
        requested = parse_bytes(str((status.get("epc") or {}).get("requested") or "0"))
    except QuantityError:
        requested = Decimal(0)
    return EnclaveContainerRef(
        namespace=str(metadata.get("namespace", "")),
        name=name,
        selector=str(status.get("selector") or f"{EC_LABEL}={name}"),
        requested_bytes=int(requested),
    )


class KubernetesReader:
    def __init__(self, api_client: k8s.ApiClient) -> None:
        self._core = k8s.CoreV1Api(api_client)
        self._custom = k8s.CustomObjectsApi(api_client)
        self._authorization = k8s.AuthorizationV1Api(api_client)

    async def pods(self, namespace: str, label_selector: str) -> list[PodRef]:
        body = await _call(
            f"pods in namespace {namespace}",
            lambda: self._core.list_namespaced_pod(
                namespace, label_selector=label_selector, **_RAW
            ),
        )
        return [pod_ref(item) for item in body.get("items") or []]

    async def pod(self, namespace: str, name: str) -> PodRef:
        body = await _call(
            f"pod {namespace}/{name}",
            lambda: self._core.read_namespaced_pod(name, namespace, **_RAW),
        )
        return pod_ref(body)

    async def enclave_containers(
        self, namespace: str, label_selector: str
    ) -> list[EnclaveContainerRef]:
        body = await _call(
            f"EnclaveContainers in namespace {namespace}",
            lambda: self._custom.list_namespaced_custom_object(
                EC_GROUP,
                EC_VERSION,
                namespace,
                EC_PLURAL,
                label_selector=label_selector,
                **_RAW,
            ),
        )
        return [enclave_container_ref(item) for item in body.get("items") or []]

    async def enclave_container(self, namespace: str, name: str) -> EnclaveContainerRef:
        body = await _call(
            f"EnclaveContainer {namespace}/{name}",
            lambda: self._custom.get_namespaced_custom_object(
                EC_GROUP, EC_VERSION, namespace, EC_PLURAL, name, **_RAW
            ),
        )
        return enclave_container_ref(body)

    async def send_review(self, body: dict[str, Any]) -> dict[str, Any]:
        return await _call(
            "a SubjectAccessReview",
            # The client serializes a plain dict body as it is.
            lambda: self._authorization.create_subject_access_review(body, **_RAW),  # type: ignore[arg-type]
        )

    async def authentication_configmap(self) -> dict[str, str]:
        body = await _call(
            f"ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}",
            lambda: self._core.read_namespaced_config_map(
                CONFIGMAP_NAME, CONFIGMAP_NAMESPACE, **_RAW
            ),
        )
        return {str(k): str(v) for k, v in (body.get("data") or {}).items()}


async def _call(what: str, request: Callable[[], Any]) -> dict[str, Any]:
    try:
        response = await asyncio.to_thread(request)
    except ApiException as error:
        raise _error(what, error) from None
    except OSError as error:
        raise UpstreamError(f"cannot reach the Kubernetes API to read {what}: {error}") from None
    document: dict[str, Any] = json.loads(response.data)
    return document


def _error(what: str, error: ApiException) -> CustomMetricsError:
    message = _message(error)
    if error.status == 404:
        return NotFoundError(f"{what} not found")
    if error.status == 400:
        return BadRequestError(f"cannot read {what}: {message}")
    if error.status in (401, 403):
        return UpstreamError(
            f"the metrics API server may not read {what} ({message}): check its RBAC"
        )
    return UpstreamError(f"the Kubernetes API failed to return {what}: {message}")


def _message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason)
    except ValueError:
        return str(error.reason)
