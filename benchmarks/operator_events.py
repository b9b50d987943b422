"""The operator's CPU per EnclaveContainer in its watch-event handling, without a cluster.

Not a test: it prints measured figures (JSON on the last line). kopf's own per-event
processing (``process_resource_event``, the function its watch streams call) is fed
the watch events a real cluster sends while N EnclaveContainers of one replica are
created and scheduled on 100 nodes (the EnclaveContainer, its Deployment as the
deployment controller updates it, its pod as it is created, bound and started, the
status the operator wrote), in two registries, in one run:

1. baseline: kopf's floor: one no-op index and one no-op event handler per watched
   resource kind (what any kopf operator watching these kinds pays);
2. operator: every handler the operator registers, with the operator's runtime
   reconciling behind them (writes go to a counting stand-in, not to an apiserver).

It reports CPU seconds per EnclaveContainer for both and their ratio, handler calls per
watch event, and the writes the reconcilers asked for. The cluster benchmark
(``operator_scale.py``) measures everything together; this isolates the operator's
Python side so a change to it can be measured on a busy machine. It reaches into
kopf's internals (``kopf._core``) and may need adjusting when kopf changes. Run:

    .venv/bin/python benchmarks/operator_events.py --count 1000
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, cast

import kopf
from kopf._cogs.structs import references
from kopf._core.actions import lifecycles
from kopf._core.engines import indexing
from kopf._core.intents import registries
from kopf._core.reactor import inventory, processing
from operator_scale import POOL, ec_spec, pool_spec

import kubetee.handlers  # noqa: F401  (registers the operator's handlers)
from kubetee.api.v1alpha1 import EnclaveContainerSpec, EPCPoolSpec
from kubetee.controller.deployment import Owner, Placement, build_deployment
from kubetee.controller.sidecar import RuntimeSettings
from kubetee.handlers import replicas
from kubetee.handlers.lifecycle import configure_kopf
from kubetee.k8s.writes import ObjectRef
from kubetee.reconcile.caches import Caches
from kubetee.reconcile.runtime import OperatorRuntime
from kubetee.settings import load_settings

NAMESPACE = "bench-ec"
NODES = 100
Event = tuple[references.Resource, str | None, dict[str, Any]]


def _resource(group: str, plural: str, kind: str, namespaced: bool = True) -> Any:
    version = "v1alpha1" if group == "kubetee.io" else "v1"
    return references.Resource(group, version, plural, kind=kind, namespaced=namespaced)


PODS = _resource("", "pods", "Pod")
DEPLOYMENTS = _resource("apps", "deployments", "Deployment")
ENCLAVE_CONTAINERS = _resource("kubetee.io", "enclavecontainers", "EnclaveContainer")
POOLS = _resource("kubetee.io", "epcpools", "EPCPool", namespaced=False)
NODE_KIND = _resource("", "nodes", "Node", namespaced=False)
KINDS = (PODS, DEPLOYMENTS, ENCLAVE_CONTAINERS, POOLS, NODE_KIND)


class CountingWriter:
    """Counts what the reconcilers would write."""

    def __init__(self) -> None:
        self.writes: Counter[str] = Counter()

    async def apply_deployment(self, manifest: dict[str, Any]) -> None:
        self.writes["apply deployments"] += 1

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        self.writes[f"patch {plural}/status"] += 1

    async def post_event(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        self.writes[f"create events ({reason})"] += 1

    async def apply_quota(self, manifest: dict[str, Any]) -> None:
        self.writes["apply resourcequotas"] += 1

    async def apply_disruption_budget(self, manifest: dict[str, Any]) -> None:
        self.writes["apply poddisruptionbudgets"] += 1

    async def delete_disruption_budget(self, namespace: str, name: str) -> None:
        self.writes["delete poddisruptionbudgets"] += 1

    async def delete_stale_quotas(
        self, label_selector: str, name: str, keep: set[str]
    ) -> list[str]:
        return []


def node(index: int) -> dict[str, Any]:
    resources = {"kubetee.io/epc": "1024", "kubetee.io/enclave": "32", "pods": "110"}
    conditions = [
        {"type": kind, "status": "True" if kind == "Ready" else "False", "reason": kind}
        for kind in ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
    ]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": f"node-{index}",
            "uid": f"node-{index}",
            "resourceVersion": "1",
            "labels": {"kubetee.io/sgx": "true", "type": "kwok"},
        },
        "spec": {},
        "status": {"capacity": resources, "allocatable": resources, "conditions": conditions},
    }


def runtime_settings() -> RuntimeSettings:
    """The sidecar settings the operator's runtime builds (so its Deployment matches)."""
    settings = load_settings(metrics_port=0)
    return RuntimeSettings(
        settings.runtime_image, settings.attestation_url, None, tcb_placement=False
    )


def lifecycle_events(index: int) -> Iterator[Event]:
    """One EnclaveContainer's watch events, in the order a cluster sends them."""
    name, uid = f"ec-{index}", f"ec-uid-{index}"
    metadata = {"name": name, "namespace": NAMESPACE, "uid": uid, "generation": 1}
    ec: dict[str, Any] = {"apiVersion": "kubetee.io/v1alpha1", "kind": "EnclaveContainer"}
    ec |= {"metadata": {**metadata, "resourceVersion": "1"}, "spec": ec_spec()}
    yield ENCLAVE_CONTAINERS, "ADDED", ec
    spec = EnclaveContainerSpec.model_validate(ec_spec())
    placement = Placement.of_pool(POOL, EPCPoolSpec.model_validate(pool_spec()))
    deployment = build_deployment(Owner(NAMESPACE, name, uid), spec, placement, runtime_settings())
    deployment["metadata"] |= {"uid": f"d-{index}", "generation": 1, "resourceVersion": "2"}
    yield DEPLOYMENTS, "ADDED", deployment
    for status in (
        {"observedGeneration": 1},
        {"observedGeneration": 1, "replicas": 1, "unavailableReplicas": 1, "updatedReplicas": 1},
    ):
        deployment = copy.deepcopy(deployment)
        deployment["status"] = status
        yield DEPLOYMENTS, "MODIFIED", deployment
    template = deployment["spec"]["template"]
    labels = {**template["metadata"]["labels"], "pod-template-hash": "5d8f"}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **copy.deepcopy(template["metadata"]),
            "name": f"{name}-5d8f-x{index}",
            "namespace": NAMESPACE,
            "uid": f"p-{index}",
            "labels": labels,
        },
        "spec": copy.deepcopy(template["spec"]),
        "status": {"phase": "Pending"},
    }
    yield PODS, "ADDED", pod
    pod = copy.deepcopy(pod)
    pod["spec"]["nodeName"] = f"node-{index % NODES}"
    pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "True"}]
    yield PODS, "MODIFIED", pod
    pod = copy.deepcopy(pod)
    started = [{"type": kind, "status": "True"} for kind in ("Initialized", "PodScheduled")]
    pod["status"] = {"phase": "Running", "podIP": "10.0.0.1", "conditions": started}
    yield PODS, "MODIFIED", pod
    ec = copy.deepcopy(ec)
    ec["status"] = {"replicas": 1, "scheduled": "1/1"}
    yield ENCLAVE_CONTAINERS, "MODIFIED", ec


def floor_registry() -> registries.OperatorRegistry:
    """No-op handlers: one index and one event handler per watched kind."""
    registry = registries.OperatorRegistry()
    for kind in KINDS:

        async def index(name: str, **_: Any) -> dict[str, bool]:
            return {name: True}

        async def event(**_: Any) -> None:
            return None

        kopf.index(kind.group, kind.version, kind.plural, registry=registry, id=kind.plural)(index)
        kopf.on.event(kind.group, kind.version, kind.plural, registry=registry)(event)
    return registry


async def feed(
    registry: registries.OperatorRegistry, events: list[Event], operator: bool
) -> dict[str, Any]:
    """Every event through kopf's processing; CPU seconds, handler calls, writes."""
    settings = kopf.OperatorSettings()
    configure_kopf(settings)
    indexers = indexing.OperatorIndexers()
    indexers.ensure(registry._indexing.get_all_handlers())
    memories = inventory.ResourceMemories()
    memo = kopf.Memo()
    writer = CountingWriter()
    runtime = None
    if operator:
        indices: Any = indexers.indices
        caches = Caches(
            enclave_containers=indices["ec_index"],
            replicas=replicas.pods(indices),
            deployments=indices["deployment_index"],
            pools=indices["pool_index"],
            nodes=indices["node_index"],
            pods_by_node=indices["pod_node_index"],
            disruption_budgets=indices["budget_index"],
            namespaces=indices["namespace_index"],
        )
        runtime = OperatorRuntime(caches, writer, load_settings(metrics_port=0))
        runtime.start()
        memo["runtime"] = runtime
    queue: asyncio.Queue[Any] = asyncio.Queue()
    lifecycle = lifecycles.get_default_lifecycle()

    async def process(kind: Any, type_: str | None, body: dict[str, Any]) -> None:
        await processing.process_resource_event(
            lifecycle=lifecycle,
            registry=registry,
            settings=settings,
            indexers=indexers,
            memories=memories,
            memobase=memo,  # type: ignore[arg-type]  # kopf's Memo is its AnyMemo
            resource=kind,
            raw_event=cast(Any, {"type": type_, "object": body}),
            event_queue=queue,
            no_throttling=True,
        )

    pool = {"apiVersion": "kubetee.io/v1alpha1", "kind": "EPCPool", "spec": pool_spec()}
    pool["metadata"] = {"name": POOL, "uid": "pool", "generation": 1}
    for index in range(NODES):
        await process(NODE_KIND, None, node(index))
    await process(POOLS, None, pool)
    await asyncio.sleep(1.5)  # the pool's first reconcile
    handlers = [
        *registry._indexing.get_all_handlers(),
        *registry._watching.get_all_handlers(),
    ]
    # (Every pod here carries the EnclaveContainer label the replica index filters on.)
    calls = sum(
        sum(1 for h in handlers if h.selector is not None and h.selector.check(kind))
        for kind, _, _ in events
    )
    start = time.process_time()
    for position, (kind, type_, body) in enumerate(events):
        await process(kind, type_, body)
        if position % 50 == 0:
            await asyncio.sleep(0)  # let the queues' workers run, as between watch reads
    if runtime is not None:
        await runtime.ec_queue.join()
        await runtime.pool_queue.join()
        await runtime.stop()
    return {
        "cpu_seconds": time.process_time() - start,
        "handler_calls_per_event": round(calls / len(events), 2),
        "writes": dict(writer.writes),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="EnclaveContainers")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each; the least CPU counts (noise)"
    )
    args = parser.parse_args()
    events = [event for index in range(args.count) for event in lifecycle_events(index)]
    print(f"{len(events)} watch events for {args.count} EnclaveContainers", file=sys.stderr)
    floor = min(
        (
            asyncio.run(feed(floor_registry(), copy.deepcopy(events), operator=False))
            for _ in range(args.repeat)
        ),
        key=lambda figures: figures["cpu_seconds"],
    )
    ours = min(
        (
            asyncio.run(feed(registries.get_default_registry(), copy.deepcopy(events), True))
            for _ in range(args.repeat)
        ),
        key=lambda figures: figures["cpu_seconds"],
    )
    per = {
        name: figures["cpu_seconds"] / args.count * 1e3
        for name, figures in [("floor", floor), ("operator", ours)]
    }
    print(
        json.dumps(
            {
                "enclave_containers": args.count,
                "watch_events": len(events),
                "kopf_floor_ms_per_enclave_container": round(per["floor"], 2),
                "operator_ms_per_enclave_container": round(per["operator"], 2),
                "ratio": round(per["operator"] / per["floor"], 2),
                "kopf_floor_handler_calls_per_event": floor["handler_calls_per_event"],
                "operator_handler_calls_per_event": ours["handler_calls_per_event"],
                "operator_writes_per_enclave_container": {
                    k: round(v / args.count, 2)
                    for k, v in sorted(ours["writes"].items())
                    if round(v / args.count, 2)
                },
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
