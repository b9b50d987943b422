"""The Kubernetes objects that put the custom metrics API server behind the kube-apiserver.

* the ``APIService`` ``v1beta2.custom.metrics.k8s.io``, pointing at a Service, with
  the CA of the server's certificate as ``caBundle``;
* the server's RBAC: read pods and EnclaveContainers, create SubjectAccessReviews
  (``system:auth-delegator``), read the front-proxy settings
  (``extension-apiserver-authentication-reader`` in ``kube-system``);
* the readers' RBAC: the HPA controller may ``get`` custom metrics.

In a cluster the Service selects the server's pods. The local cluster has no
kube-proxy and its kube-apiserver routes to endpoints (``--enable-aggregator-
routing``), which it finds through EndpointSlices: a selector-less Service and an
EndpointSlice the caller manages (:func:`endpoint_slice`). EndpointSlice addresses
may not be loopback (``127.0.0.0/8``), and with endpoint routing the aggregator
refuses ``ExternalName`` Services, so the local server listens on an address of
the host's own network interface.
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


def api_service(ca_bundle: bytes, namespace: str = NAMESPACE, service: str = SERVICE) -> Manifest:
    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": api_service_name(), "labels": dict(LABELS)},
        "spec": {
            "group": GROUP,
            "version": VERSION,
            "service": {"namespace": namespace, "name": service, "port": SERVICE_PORT},
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


def endpoint_slice(address: str, port: int, namespace: str = NAMESPACE) -> Manifest:
    """The endpoint of a selector-less Service, managed by us, not the controller."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{SERVICE}-local",
            "namespace": namespace,
            "labels": {
                **LABELS,
                "kubernetes.io/service-name": SERVICE,
                "endpointslice.kubernetes.io/managed-by": "kubetee-metrics-local",
            },
        },
        "addressType": "IPv6" if ":" in address else "IPv4",
        "ports": [{"name": PORT_NAME, "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
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
