"""The simulated SGX nodes: Node objects that KWOK keeps Ready."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetee.cluster.components import KWOK_NODE_ANNOTATION
from kubetee.k8s.sync_client import sync_api_client

NODE_PREFIX = "sgx-node-"
SGX_LABEL = "kubetee.io/sgx"


def node_name(index: int) -> str:
    return f"{NODE_PREFIX}{index}"


def api_client(kubeconfig: Path) -> client.ApiClient:
    return sync_api_client(kubeconfig)


def node_manifest(name: str) -> dict[str, Any]:
    """A Node as KWOK expects it, with ordinary capacity; EPC comes from the device plugin."""
    capacity = {"cpu": "32", "memory": "128Gi", "pods": "110", "ephemeral-storage": "500Gi"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/role": "agent",
                "type": "kwok",
                SGX_LABEL: "true",
            },
        },
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def ensure_nodes(api: client.ApiClient, count: int) -> list[str]:
    """Create missing nodes ``sgx-node-1..count`` and delete surplus ones from earlier runs."""
    core = client.CoreV1Api(api)
    wanted = [node_name(i) for i in range(1, count + 1)]
    existing = {_name(n) for n in core.list_node().items}
    for name in wanted:
        if name not in existing:
            try:
                core.create_node(node_manifest(name))  # type: ignore[arg-type]
            except ApiException as exc:
                if exc.status != 409:
                    raise
    for name in existing - set(wanted):
        if name.startswith(NODE_PREFIX):
            core.delete_node(name)
    return wanted


def _name(node: client.V1Node) -> str:
    return node.metadata.name if node.metadata and node.metadata.name else ""


def all_ready(api: client.ApiClient, names: list[str]) -> bool:
    core = client.CoreV1Api(api)
    ready = set()
    for node in core.list_node().items:
        conditions = (node.status.conditions if node.status else None) or []
        if any(c.type == "Ready" and c.status == "True" for c in conditions):
            ready.add(_name(node))
    return set(names) <= ready


def default_service_account_exists(api: client.ApiClient) -> bool:
    try:
        client.CoreV1Api(api).read_namespaced_service_account("default", "default")
    except ApiException:
        return False
    return True


def all_have_epc(api: client.ApiClient, names: list[str], epc_mib: int) -> bool:
    """True once every node advertises the configured EPC (published by its node agent)
    and every enclave slot as usable (its device plugin finds the quoting service)."""
    core = client.CoreV1Api(api)
    published = set()
    for node in core.list_node().items:
        capacity = (node.status.capacity or {}) if node.status else {}
        allocatable = (node.status.allocatable or {}) if node.status else {}
        slots = capacity.get("kubetee.io/enclave")
        if (
            capacity.get("kubetee.io/epc") == str(epc_mib)
            and allocatable.get("kubetee.io/enclave") == slots
        ):
            published.add(_name(node))
    return set(names) <= published
