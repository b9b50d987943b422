"""What the EnclaveContainer CRD's validation costs the kube-apiserver, per write.

Not a test: it prints measured figures (JSON on the last line). The apiserver's CEL
metric (``apiserver_cel_evaluation_duration_seconds``) is wall time, observed at every
schema node on the way down to a rule and so counted again by each node above it: it
says where rules run, not what they cost. This script measures the cost directly: on
one local cluster, with the same writes (``--count`` EnclaveContainers created, then
each one's status patched once, as the operator does), it compares the apiserver's own
CPU seconds under each CRD variant:

- ``committed``: ``crds/enclavecontainers.kubetee.io.yaml`` as generated;
- ``without rules``: the same with every ``x-kubernetes-validations`` removed (the
  floor: what the writes cost with no CEL at all);
- any ``--crd NAME=PATH`` given (an older CRD, say: ``git show main:crds/...``).

Variants alternate for ``--rounds`` rounds; the figures are each variant's median
round by apiserver CPU (the machine is shared: one round of a variant can take a third
more CPU than another of the same), with every round's CPU seconds listed. Run:

    .venv/bin/python benchmarks/crd_validation_cost.py     # brings up cluster "celcost"
    .venv/bin/python benchmarks/crd_validation_cost.py --kubeconfig PATH --count 500
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from apiserver_figures import difference, snapshot
from kubernetes import client
from operator_scale import (
    GROUP,
    KUBECTL,
    REPO,
    VERSION,
    add_cluster_arguments,
    benchmark_cluster,
    create_all,
    delete_namespace,
    ec_spec,
    fresh_namespace,
    log,
)

NAMESPACE = "bench-crd-validation"
CRD_NAME = f"enclavecontainers.{GROUP}"
COMMITTED = REPO / "crds" / f"{CRD_NAME}.yaml"


def without_rules(node: Any) -> Any:
    """``node`` with every ``x-kubernetes-validations`` removed, at any depth."""
    if isinstance(node, dict):
        return {k: without_rules(v) for k, v in node.items() if k != "x-kubernetes-validations"}
    if isinstance(node, list):
        return [without_rules(item) for item in node]
    return node


def install(kubeconfig: Path, crd: dict[str, Any]) -> None:
    """Replace the CRD's schema and wait until the apiserver serves the new one."""
    text = yaml.safe_dump(crd)
    base = [KUBECTL, f"--kubeconfig={kubeconfig}"]
    apply = [*base, "apply", "--server-side", "--force-conflicts", "-f", "-"]
    subprocess.run(apply, input=text, text=True, check=True, stdout=subprocess.DEVNULL)
    wait = [*base, "wait", "--for=condition=Established", f"crd/{CRD_NAME}"]
    subprocess.run(wait, check=True, stdout=subprocess.DEVNULL)
    time.sleep(3)  # the apiserver swaps its handler (and validators) for the new schema


def status_patch(generation: int) -> dict[str, Any]:
    """A status as the operator writes it once the replica is scheduled."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def condition(kind: str, status: str, reason: str) -> dict[str, Any]:
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": f"{kind} is {status}: {reason}",
            "observedGeneration": generation,
            "lastTransitionTime": now,
        }

    return {
        "status": {
            "observedGeneration": generation,
            "replicas": 1,
            "scheduledReplicas": 1,
            "scheduled": "1/1",
            "selector": "kubetee.io/enclavecontainer=x",
            "pool": "bench",
            "epc": {"perReplica": "64Mi", "requested": "64Mi", "allocated": "64Mi"},
            "attestation": {"pinned": "mrsigner 83d7…, mrenclave any"},
            "conditions": [
                condition("Scheduled", "True", "Scheduled"),
                condition("Attested", "False", "AttestationPending"),
                condition("Ready", "False", "AttestationPending"),
            ],
        }
    }


def one_round(api: client.ApiClient, count: int) -> dict[str, float]:
    """Create ``count`` EnclaveContainers, patch each one's status; what it cost."""
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    fresh_namespace(core, NAMESPACE)

    def create(index: int) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "EnclaveContainer",
            "metadata": {"name": f"ec-{index}"},
            "spec": ec_spec(),
        }
        custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "enclavecontainers", body)

    def patch(index: int) -> None:
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, NAMESPACE, "enclavecontainers", f"ec-{index}", status_patch(1)
        )

    try:
        before = snapshot(api)
        started = time.monotonic()
        create_all(count, create)
        create_all(count, patch)
        seconds = time.monotonic() - started
        figures = difference(before, snapshot(api))
    finally:
        delete_namespace(core, NAMESPACE)
    writes = figures.writes
    ours = sum(n for key, n in writes.items() if "enclavecontainers" in key)
    return {
        "seconds": round(seconds, 1),
        "apiserver_cpu_seconds": round(figures.apiserver_cpu_seconds, 2),
        "enclavecontainer_writes": ours,
        "cel_metric_seconds": round(figures.cel_seconds, 2),
        "cel_metric_observations": figures.cel_evaluations,
    }


def variants(extra: list[str]) -> dict[str, dict[str, Any]]:
    committed = yaml.safe_load(COMMITTED.read_text())
    found = {"committed": committed, "without rules": without_rules(committed)}
    for item in extra:
        name, _, path = item.partition("=")
        found[name] = yaml.safe_load(Path(path).read_text())
    return found


def measure_all(
    kubeconfig: Path, api: client.ApiClient, args: argparse.Namespace
) -> dict[str, Any]:
    crds = variants(args.crd)
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in crds}
    for number in range(1, args.rounds + 1):
        for name, crd in crds.items():
            install(kubeconfig, crd)
            figures = one_round(api, args.count)
            log(f"round {number}, {name}: {figures}")
            rounds[name].append(figures)
    install(kubeconfig, crds["committed"])

    def median(name: str) -> dict[str, float]:
        ranked = sorted(rounds[name], key=lambda figures: figures["apiserver_cpu_seconds"])
        return ranked[(len(ranked) - 1) // 2]

    floor = median("without rules")["apiserver_cpu_seconds"]
    report: dict[str, Any] = {"count": args.count, "rounds": args.rounds}
    for name in crds:
        best = median(name)
        extra = best["apiserver_cpu_seconds"] - floor
        report[name] = {
            **best,
            "cpu_ms_per_write_above_no_rules": round(
                1000 * extra / max(best["enclavecontainer_writes"], 1), 3
            ),
            "all_rounds_cpu_seconds": [r["apiserver_cpu_seconds"] for r in rounds[name]],
        }
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_cluster_arguments(parser, name="celcost", nodes=1, count=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--crd", action="append", default=[], metavar="NAME=PATH", help="another CRD variant"
    )
    args = parser.parse_args()

    with benchmark_cluster(args, pool_size=16, clean_up=_delete_namespace) as (kubeconfig, api):
        print(json.dumps(measure_all(kubeconfig, api, args)))
    return 0


def _delete_namespace(_: Path, api: client.ApiClient) -> None:
    delete_namespace(client.CoreV1Api(api), NAMESPACE)


if __name__ == "__main__":
    sys.exit(main())
