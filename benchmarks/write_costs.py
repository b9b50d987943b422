"""What one write of each kind the operator phase adds costs the kube-apiserver, in CPU.

Not a test: it prints measured figures (JSON on the last line). ``operator_scale.py``
says how many writes of each kind the operator phase makes on top of plain Deployments;
this script says what each kind costs, measured directly on one local cluster: for each
kind, ``--count`` writes (8 at a time, as the scale benchmark creates), the apiserver's
own CPU seconds (its ``process_cpu_seconds_total``) over them, less what the idle
cluster costs over the same time (node heartbeats), divided by the writes:

- ``deployment create``: a POST of the Deployment the operator builds (the scale
  benchmark's baseline creates it so), paused so that no pods follow; its controller's
  status write is included, as in the next;
- ``deployment apply``: the same manifest as the operator sends it: a server-side apply
  (``application/apply-patch+yaml``, field manager ``kubetee-operator``, forced);
- ``enclavecontainer create``: the scale benchmark's EnclaveContainer (no operator runs);
- ``enclavecontainer status``: the operator's merge patch of its status (once each);
- ``event``: a Warning Event as the operator posts it.

Kinds alternate for ``--rounds`` rounds; each kind's median round is reported with every
round's figure. Run:

    .venv/bin/python benchmarks/write_costs.py          # brings up cluster "writecost"
    .venv/bin/python benchmarks/write_costs.py --kubeconfig PATH --count 300
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apiserver_figures import difference, snapshot
from crd_validation_cost import status_patch
from kubernetes import client
from operator_scale import (
    GROUP,
    POOL,
    REPO,
    VERSION,
    add_cluster_arguments,
    benchmark_cluster,
    create_all,
    delete_namespace,
    ec_spec,
    fresh_namespace,
    kubectl,
    log,
    pool_spec,
)

from kubetee.api.v1alpha1 import EnclaveContainerSpec, EPCPoolSpec
from kubetee.controller.deployment import Owner, Placement, build_deployment
from kubetee.controller.names import FIELD_MANAGER
from kubetee.controller.sidecar import RuntimeSettings
from kubetee.k8s.writes import ObjectRef, event_body

NAMESPACE = "bench-write-costs"
IDLE_SECONDS = 10.0

Write = Callable[[int], None]


def deployment(index: int) -> dict[str, Any]:
    spec = EnclaveContainerSpec.model_validate(ec_spec())
    placement = Placement.of_pool(POOL, EPCPoolSpec.model_validate(pool_spec()))
    manifest = build_deployment(
        Owner(NAMESPACE, f"w-{index}", ""),
        spec,
        placement,
        RuntimeSettings("kubetee/kubetee:0.1.0"),
    )
    del manifest["metadata"]["ownerReferences"]
    manifest["spec"]["paused"] = True  # no ReplicaSet, no pods: the write alone
    return manifest


def enclave_container(index: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "EnclaveContainer",
        "metadata": {"name": f"w-{index}"},
        "spec": ec_spec(),
    }


def event(index: int) -> tuple[str, dict[str, Any]]:
    """The Event the operator posts when it has no attestation service, as it posts it."""
    namespace, body = event_body(
        ObjectRef(f"{GROUP}/{VERSION}", "EnclaveContainer", f"w-{index}", NAMESPACE, ""),
        "Warning",
        "AttestationUnavailable",
        "0 of 1 replicas attested; the operator has no attestation service "
        "(KUBETEE_ATTESTATION_URL is unset): no replica can attest; run the operator with "
        "--attestation-url",
        datetime.now(UTC),
    )
    return namespace, body.model_dump(by_alias=True, mode="json", exclude_none=True)


def kinds(api: client.ApiClient) -> dict[str, tuple[Write | None, Write]]:
    """Each kind: (what must exist first, not measured; the measured write)."""
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)

    def create_ec(index: int) -> None:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, "enclavecontainers", enclave_container(index)
        )

    def patch_status(index: int) -> None:
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, NAMESPACE, "enclavecontainers", f"w-{index}", status_patch(1)
        )

    def apply(index: int) -> None:
        manifest = deployment(index)
        apps.patch_namespaced_deployment(
            manifest["metadata"]["name"],
            NAMESPACE,
            manifest,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )

    return {
        "deployment create": (
            None,
            lambda index: apps.create_namespaced_deployment(NAMESPACE, deployment(index)),
        ),
        "deployment apply": (None, apply),
        "enclavecontainer create": (None, create_ec),
        "enclavecontainer status": (create_ec, patch_status),
        "event": (None, lambda index: core.create_namespaced_event(*event(index))),
    }


def idle_rate(api: client.ApiClient) -> float:
    """The apiserver's CPU seconds per second with nothing but the cluster's heartbeats."""
    before = snapshot(api)
    time.sleep(IDLE_SECONDS)
    return difference(before, snapshot(api)).apiserver_cpu_seconds / IDLE_SECONDS


def one_round(
    api: client.ApiClient, count: int, first: Write | None, write: Write, idle: float
) -> dict[str, float]:
    core = client.CoreV1Api(api)
    fresh_namespace(core, NAMESPACE)
    try:
        if first is not None:
            create_all(count, first)
            time.sleep(2)  # the watchers have had these
        before = snapshot(api)
        started = time.monotonic()
        create_all(count, write)
        time.sleep(2)  # the controllers' follow-up (a Deployment's status) counts too
        seconds = time.monotonic() - started
        figures = difference(before, snapshot(api))
    finally:
        delete_namespace(core, NAMESPACE)
    cpu = figures.apiserver_cpu_seconds - idle * seconds
    return {
        "apiserver_cpu_ms_per_write": round(1000 * cpu / count, 2),
        "seconds": round(seconds, 1),
        "writes_by_all_clients": figures.workload_writes(),
    }


def measure_all(api: client.ApiClient, args: argparse.Namespace) -> dict[str, Any]:
    idle = idle_rate(api)
    log(f"idle apiserver: {idle:.3f} CPU seconds per second")
    found = kinds(api)
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in found}
    for number in range(1, args.rounds + 1):
        for name, (first, write) in found.items():
            figures = one_round(api, args.count, first, write, idle)
            log(f"round {number}, {name}: {figures}")
            rounds[name].append(figures)
    report: dict[str, Any] = {"count": args.count, "rounds": args.rounds, "idle": idle}
    for name, measured in rounds.items():
        ranked = sorted(measured, key=lambda figures: figures["apiserver_cpu_ms_per_write"])
        report[name] = {
            **ranked[(len(ranked) - 1) // 2],
            "all_rounds_ms": [r["apiserver_cpu_ms_per_write"] for r in measured],
        }
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_cluster_arguments(parser, name="writecost", nodes=1, count=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with benchmark_cluster(args, pool_size=16, clean_up=_delete_namespace) as (kubeconfig, api):
        kubectl(kubeconfig, "apply", "-f", str(REPO / "crds"))
        kubectl(kubeconfig, "wait", "--for=condition=Established", f"crd/enclavecontainers.{GROUP}")
        print(json.dumps(measure_all(api, args)))
    return 0


def _delete_namespace(_: Path, api: client.ApiClient) -> None:
    delete_namespace(client.CoreV1Api(api), NAMESPACE)


if __name__ == "__main__":
    sys.exit(main())
