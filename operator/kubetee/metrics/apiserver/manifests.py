"""The Kubernetes objects that put the custom metrics API server behind the kube-apiserver.

* the ``APIService`` ``v1beta2.custom.metrics.k8s.io``, pointing at a Service, with
  the CA of the server's certificate as ``caBundle``;
* the server's RBAC: read pods and EnclaveContainers, create SubjectAccessReviews
  (``system:auth-delegator``), read the front-proxy settings
  (``extension-apiserver-authentication-reader`` in ``kube-system``);
* the readers' RBAC: the HPA controller may ``get`` custom metrics.

In a cluster the Service selects the server's pods. On the local cluster the server
is a process on loopback: its Service is ``ExternalName: localhost``
(:func:`local_service`), which the aggregator's default (cluster) routing resolves to
``localhost:<APIService port>``, so the APIService names the server's own port.
(EndpointSlices may not hold loopback addresses, and endpoint routing refuses
``ExternalName`` Services, so this is the one way to loopback.)
"""

from __future__ import annotations

import base64
from typing import Any

from kubetee.metrics.apiserver.wire import GROUP, VERSION

NAMESPACE = "kube-system"
SERVICE = "kubetee-metrics-apiserver"
SERVICE_PORT = 443
PORT_NAME = "https"
HPA_SERVICE_ACCOUNT = ("kube-system", "horizontal-pod-autoscaler")
FIELD_MANAGER = "kubetee-metrics"
LABELS = {"app.kubernetes.io/name": SERVICE, "app.kubernetes.io/part-of": "kubetee"}

Manifest = dict[str, Any]


def api_service_name() -> str:
    return f"{VERSION}.{GROUP}"


def service_dns_names(namespace: str = NAMESPACE, service: str = SERVICE) -> tuple[str, ...]:
    """Names the aggregator may check the server's certificate against."""
    return (
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
        f"{service}.{namespace}",
        service,
    )


def api_service(
    ca_bundle: bytes,
    namespace: str = NAMESPACE,
    service: str = SERVICE,
    port: int = SERVICE_PORT,
) -> Manifest:
    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": api_service_name(), "labels": dict(LABELS)},
        "spec": {
            "group": GROUP,
            "version": VERSION,
            "service": {"namespace": namespace, "name": service, "port": port},
            "caBundle": base64.b64encode(ca_bundle).decode(),
            "groupPriorityMinimum": 100,
            "versionPriority": 200,
        },
    }


def service(
    target_port: int, selector: dict[str, str] | None = None, namespace: str = NAMESPACE
) -> Manifest:
    spec: dict[str, Any] = {
        "ports": [
            {"name": PORT_NAME, "port": SERVICE_PORT, "targetPort": target_port, "protocol": "TCP"}
        ]
    }
    if selector:
        spec["selector"] = selector
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": namespace, "labels": dict(LABELS)},
        "spec": spec,
    }


def local_service(port: int, host: str = "localhost", namespace: str = NAMESPACE) -> Manifest:
    """The Service of a server running as a local process, reached at ``host:port``."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": namespace, "labels": dict(LABELS)},
        "spec": {
            "type": "ExternalName",
            "externalName": host,
            "ports": [{"name": PORT_NAME, "port": port, "protocol": "TCP"}],
        },
    }


def _binding(kind: str, name: str, role_kind: str, role: str, subject: Manifest) -> Manifest:
    metadata: dict[str, Any] = {"name": name, "labels": dict(LABELS)}
    if kind == "RoleBinding":
        metadata["namespace"] = NAMESPACE
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": metadata,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [subject],
    }


def rbac(server_subject: Manifest) -> list[Manifest]:
    """RBAC of the server (``server_subject``: its User or ServiceAccount) and of the HPA."""
    hpa_namespace, hpa_name = HPA_SERVICE_ACCOUNT
    hpa = {"kind": "ServiceAccount", "namespace": hpa_namespace, "name": hpa_name}
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "kubetee:metrics-apiserver", "labels": dict(LABELS)},
            "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
                {
                    "apiGroups": ["kubetee.io"],
                    "resources": ["enclavecontainers"],
                    "verbs": ["get", "list"],
                },
            ],
        },
        _binding(
            "ClusterRoleBinding",
            "kubetee:metrics-apiserver",
            "ClusterRole",
            "kubetee:metrics-apiserver",
            server_subject,
        ),
        _binding(
            "ClusterRoleBinding",
            "kubetee:metrics-apiserver:auth-delegator",
            "ClusterRole",
            "system:auth-delegator",
            server_subject,
        ),
        _binding(
            "RoleBinding",
            "kubetee:metrics-apiserver:auth-reader",
            "Role",
            "extension-apiserver-authentication-reader",
            server_subject,
        ),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "kubetee:custom-metrics-reader", "labels": dict(LABELS)},
            "rules": [{"apiGroups": [GROUP], "resources": ["*"], "verbs": ["get", "list"]}],
        },
        _binding(
            "ClusterRoleBinding",
            "kubetee:hpa-custom-metrics",
            "ClusterRole",
            "kubetee:custom-metrics-reader",
            hpa,
        ),
    ]
