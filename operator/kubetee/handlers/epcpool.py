"""EPCPools, nodes and every pod that holds EPC: indexes and events."""

from __future__ import annotations

from typing import Any

import kopf

from kubetee.controller.names import GROUP, POOL_PLURAL
from kubetee.controller.views import (
    NodeView,
    PodView,
    ResourceView,
    node_view,
    resource_view,
)
from kubetee.handlers.lifecycle import runtime_of
from kubetee.handlers.replicas import cached_pod_view

_VERSION = "v1alpha1"


@kopf.index(GROUP, _VERSION, POOL_PLURAL, id="pool_index")
async def pool_index(body: kopf.Body, name: str, **_: Any) -> dict[str, ResourceView]:
    return {name: resource_view(body)}


@kopf.on.event(GROUP, _VERSION, POOL_PLURAL)
async def pool_event(name: str, memo: kopf.Memo, **_: Any) -> None:
    runtime_of(memo).pool_changed(name)


@kopf.index("", "v1", "nodes", id="node_index")
async def node_index(body: kopf.Body, name: str, **_: Any) -> dict[str, NodeView]:
    return {name: node_view(body)}


@kopf.on.event("", "v1", "nodes")
async def node_event(body: kopf.Body, type: str, memo: kopf.Memo, **_: Any) -> None:
    runtime_of(memo).node_changed(node_view(body), deleted=type == "DELETED")


@kopf.index("", "v1", "namespaces", id="namespace_index")
async def namespace_index(body: kopf.Body, name: str, **_: Any) -> dict[str, str]:
    return {name: str((body.get("status") or {}).get("phase") or "Active")}


@kopf.on.event("", "v1", "namespaces")
async def namespace_event(name: str, memo: kopf.Memo, **_: Any) -> None:
    # A namespace named in a pool's spec.quotas may have just been created (or deleted).
    runtime_of(memo).namespace_changed(name)


@kopf.index("", "v1", "pods", id="pod_node_index")
async def pod_node_index(body: kopf.Body, **_: Any) -> dict[str, PodView]:
    pod = cached_pod_view(body)
    # Only what holds EPC on a node counts in the pools' accounting.
    return {pod.node: pod} if pod.holds_epc else {}


@kopf.on.event("", "v1", "pods")
async def pod_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime_of(memo).pod_changed(cached_pod_view(body))
