"""What the operator adds on top of Kubernetes when 1,000 EnclaveContainers are created.

Not a test: it prints measured figures (JSON on the last line). On a local cluster of
simulated nodes (default 100, ``kubetee cluster --name bench up --no-node-services``;
the script patches EPC into the nodes itself), in one run:

1. baseline: the same pods as plain Deployments, created without the operator: the pod
   template the operator would build (runtime sidecar with EPC, affinity, scheduler
   profile); time from the first create until every pod is bound to a node;
2. operator: ``kubetee operator`` running, 1,000 EnclaveContainers of one replica;
   time from the first create until every EnclaveContainer says ``Scheduled=True``.

It reports both times and their ratio (goal: below 1.25), the operator's peak RSS and
CPU time, and its API writes per EnclaveContainer (its own counter, by verb; the
operator reads only through watches). Run:

    .venv/bin/python benchmarks/operator_scale.py            # brings up cluster "bench"
    .venv/bin/python benchmarks/operator_scale.py --kubeconfig PATH --count 200
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from enclave_runtime.runtime.enclave import load_signer
from kubetee.api.v1alpha1 import EnclaveContainerSpec, EPCPoolSpec
from kubetee.cluster.toolchain import binary_path
from kubetee.controller.deployment import Owner, Placement, build_deployment
from kubetee.controller.sidecar import RuntimeSettings

REPO = Path(__file__).resolve().parents[1]
GROUP, VERSION = "kubetee.io", "v1alpha1"
POOL = "bench"
NODE_EPC_MIB, NODE_ENCLAVES = 1024, 32
CREATE_THREADS = 8
KUBECTL = str(binary_path("kubectl"))


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# Every EnclaveContainer pins its enclave: here the simulation signer's MRSIGNER.
SIMULATION_MRSIGNER = load_signer(None).mrsigner.hex()


def ec_spec() -> dict[str, Any]:
    return {
        "replicas": 1,
        "epc": "64Mi",
        "poolRef": {"name": POOL},
        "template": {"spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}},
        "attestation": {"policy": {"mrsigner": [SIMULATION_MRSIGNER]}},
    }


def pool_spec() -> dict[str, Any]:
    return {"nodeSelector": {"kubetee.io/sgx": "true"}, "epcPerNode": f"{NODE_EPC_MIB}Mi"}


def cluster_kubeconfig(args: argparse.Namespace) -> Path:
    if args.kubeconfig:
        return Path(args.kubeconfig)
    kubetee = [sys.executable, "-m", "kubetee.cli", "cluster", "--name", args.cluster_name]
    log(f"bringing up cluster {args.cluster_name!r} with {args.nodes} nodes")
    subprocess.run(
        [*kubetee, "up", "--nodes", str(args.nodes), "--no-node-services"],
        check=True,
        cwd=REPO,
        stdout=sys.stderr,
    )
    path = subprocess.run(
        [*kubetee, "kubeconfig"], check=True, capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    return Path(path)


def give_nodes_epc(core: client.CoreV1Api) -> int:
    """What the device plugin and node agent would publish, patched in directly."""
    nodes = [n.metadata.name for n in core.list_node(label_selector="kubetee.io/sgx=true").items]
    resources = {"kubetee.io/epc": str(NODE_EPC_MIB), "kubetee.io/enclave": str(NODE_ENCLAVES)}
    for name in nodes:
        core.patch_node_status(name, {"status": {"capacity": resources, "allocatable": resources}})
    return len(nodes)


def kubectl_apply(kubeconfig: Path, path: Path) -> None:
    subprocess.run(
        [KUBECTL, f"--kubeconfig={kubeconfig}", "apply", "-f", str(path)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def fresh_namespace(core: client.CoreV1Api, name: str) -> None:
    delete_namespace(core, name)
    core.create_namespace({"metadata": {"name": name}})


def delete_namespace(core: client.CoreV1Api, name: str, timeout: float = 600) -> None:
    try:
        core.delete_namespace(name)
    except ApiException as exc:
        if exc.status == 404:
            return
        raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(1)
    raise RuntimeError(f"namespace {name} not gone after {timeout}s")


def create_all(count: int, create: Callable[[int], None]) -> None:
    with ThreadPoolExecutor(CREATE_THREADS) as pool:
        for future in [pool.submit(create, index) for index in range(count)]:
            future.result()


def wait_until_all(
    count: int,
    stream: Callable[[], Iterable[dict[str, Any]]],
    done: Callable[[dict[str, Any]], bool],
    timeout: float,
) -> float:
    """Follow a watch until ``count`` distinct objects satisfy ``done``; when it happened."""
    finished: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in stream():
            obj = event["object"]
            name = obj["metadata"]["name"]
            if event["type"] != "DELETED" and done(obj):
                finished.add(name)
            if len(finished) >= count:
                return time.monotonic()
            if time.monotonic() > deadline:
                break
    raise RuntimeError(f"only {len(finished)} of {count} done after {timeout}s")


def watch_stream(
    list_call: Callable[..., Any], *args: Any
) -> Callable[[], Iterable[dict[str, Any]]]:
    """A watch as raw JSON events: deserializing thousands of models would load the
    measuring side, which shares the two cores with the cluster."""

    def stream() -> Iterable[dict[str, Any]]:
        response = list_call(*args, watch=True, timeout_seconds=60, _preload_content=False)
        try:
            for line in response:
                if line.strip():
                    yield json.loads(line)
        finally:
            response.release_conn()

    return stream


def baseline(
    api: client.ApiClient, count: int, timeout: float, pids: dict[str, int]
) -> tuple[float, dict[str, float]]:
    """Seconds until ``count`` plain Deployments' pods are all bound; CPU spent meanwhile."""
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    namespace = "bench-plain"
    fresh_namespace(core, namespace)
    spec = EnclaveContainerSpec.model_validate(ec_spec())
    placement = Placement.of_pool(POOL, EPCPoolSpec.model_validate(pool_spec()))
    runtime = RuntimeSettings("kubetee/kubetee:0.1.0")

    def create(index: int) -> None:
        manifest = build_deployment(
            Owner(namespace, f"plain-{index}", ""), spec, placement, runtime
        )
        del manifest["metadata"]["ownerReferences"]
        apps.create_namespaced_deployment(namespace, manifest)

    bound: dict[str, float] = {}
    waiter = _in_thread(
        lambda: bound.setdefault(
            "at",
            wait_until_all(
                count,
                watch_stream(core.list_namespaced_pod, namespace),
                lambda pod: bool(pod.get("spec", {}).get("nodeName")),
                timeout,
            ),
        )
    )
    cpu_before = cpu_seconds(pids)
    start = time.monotonic()
    create_all(count, create)
    log(f"baseline: {count} Deployments created in {time.monotonic() - start:.1f}s")
    waiter.join()
    if "at" not in bound:
        raise RuntimeError("baseline did not finish")
    seconds = bound["at"] - start
    spent = cpu_spent(cpu_before, cpu_seconds(pids))
    delete_namespace(core, namespace)
    return seconds, spent


def _in_thread(target: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    time.sleep(0.5)  # the watch is open before the first create
    return thread


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def operator_writes(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    writes = {}
    for line in text.splitlines():
        if line.startswith("kubetee_operator_api_writes_total{"):
            labels, value = line.rsplit(" ", 1)
            writes[labels.removeprefix("kubetee_operator_api_writes_total")] = float(value)
    return writes


def component_pids(cluster_name: str) -> dict[str, int]:
    """Processes of the local cluster (empty when it is not one of ours)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubetee.cli",
            "cluster",
            "--name",
            cluster_name,
            "status",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    if result.returncode != 0:
        return {}
    return {c["name"]: c["pid"] for c in json.loads(result.stdout)["components"] if c["pid"]}


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    found = {}
    for name, pid in pids.items():
        try:
            found[name] = proc_figures(pid)[1]
        except OSError:
            continue
    return found


def cpu_spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before.get(name, 0.0), 1) for name in after}


def wait_for_metrics(
    port: int, operator: subprocess.Popen[bytes], log_path: Path, timeout: float = 120
) -> dict[str, float]:
    """The operator's write counters once it serves them (it has started by then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if operator.poll() is not None:
            raise RuntimeError(f"operator exited; see {log_path}")
        try:
            writes = operator_writes(port)
        except OSError:
            time.sleep(0.5)
            continue
        time.sleep(3)  # its watches have listed the cluster
        return writes
    raise RuntimeError(f"operator serves no metrics after {timeout}s; see {log_path}")


def proc_figures(pid: int) -> tuple[float, float]:
    """(peak RSS in MiB, CPU seconds) of a process, from /proc."""
    peak = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return peak, cpu


def with_operator(
    api: client.ApiClient, kubeconfig: Path, count: int, timeout: float, pids: dict[str, int]
) -> dict[str, Any]:
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    namespace = "bench-ec"
    fresh_namespace(core, namespace)
    port = free_port()
    log_path = Path("/tmp") / f"kubetee-operator-bench-{os.getpid()}.log"  # noqa: S108
    with log_path.open("wb") as log_file:
        operator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kubetee.cli",
                "operator",
                "--kubeconfig",
                str(kubeconfig),
                "--metrics-port",
                str(port),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    try:
        writes_before = wait_for_metrics(port, operator, log_path)

        def create(index: int) -> None:
            custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                "enclavecontainers",
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "EnclaveContainer",
                    "metadata": {"name": f"ec-{index}"},
                    "spec": ec_spec(),
                },
            )

        def scheduled(obj: dict[str, Any]) -> bool:
            return any(
                c.get("type") == "Scheduled" and c.get("status") == "True"
                for c in (obj.get("status") or {}).get("conditions") or ()
            )

        result: dict[str, float] = {}
        waiter = _in_thread(
            lambda: result.setdefault(
                "at",
                wait_until_all(
                    count,
                    watch_stream(
                        custom.list_namespaced_custom_object,
                        GROUP,
                        VERSION,
                        namespace,
                        "enclavecontainers",
                    ),
                    scheduled,
                    timeout,
                ),
            )
        )
        watched = {**pids, "operator": operator.pid}
        cpu_before = cpu_seconds(watched)
        start = time.monotonic()
        create_all(count, create)
        log(f"operator: {count} EnclaveContainers created in {time.monotonic() - start:.1f}s")
        waiter.join()
        if "at" not in result:
            raise RuntimeError(f"not all Scheduled; see {log_path}")
        seconds = result["at"] - start
        spent = cpu_spent(cpu_before, cpu_seconds(watched))
        time.sleep(3)  # let the last status writes and events land before counting
        writes_after = operator_writes(port)
        peak_rss, cpu = proc_figures(operator.pid)
        writes = {k: v - writes_before.get(k, 0) for k, v in writes_after.items()}
        return {
            "seconds": seconds,
            "peak_rss_mib": round(peak_rss, 1),
            "cpu_seconds": round(cpu, 1),
            "cpu_during": spent,
            "writes": writes,
            "log": str(log_path),
        }
    finally:
        operator.send_signal(signal.SIGTERM)
        operator.wait(timeout=60)
        delete_namespace(core, namespace)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", help="use this running cluster instead")
    parser.add_argument("--cluster-name", default="bench")
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=1200)
    args = parser.parse_args()

    kubeconfig = cluster_kubeconfig(args)
    os.environ["KUBECONFIG"] = str(kubeconfig)
    api = config.new_client_from_config(str(kubeconfig))
    api.configuration.connection_pool_maxsize = CREATE_THREADS * 2
    core = client.CoreV1Api(api)
    nodes = give_nodes_epc(core)
    kubectl_apply(kubeconfig, REPO / "crds")
    subprocess.run(
        [
            KUBECTL,
            f"--kubeconfig={kubeconfig}",
            "wait",
            "--for=condition=Established",
            "crd/enclavecontainers.kubetee.io",
            "crd/epcpools.kubetee.io",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    pool = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "EPCPool",
        "metadata": {"name": POOL},
        "spec": pool_spec(),
    }
    subprocess.run(
        [KUBECTL, f"--kubeconfig={kubeconfig}", "apply", "-f", "-"],
        input=yaml.safe_dump(pool),
        text=True,
        check=True,
        stdout=subprocess.DEVNULL,
    )

    log(f"{nodes} nodes with {NODE_EPC_MIB} MiB EPC each; baseline of {args.count} pods")
    pids = component_pids(args.cluster_name)
    plain, plain_cpu = baseline(api, args.count, args.timeout, pids)
    log(f"baseline: all bound after {plain:.1f}s; now with the operator")
    measured = with_operator(api, kubeconfig, args.count, args.timeout, pids)
    writes = measured.pop("writes")
    total_writes = sum(writes.values())
    figures = {
        "nodes": nodes,
        "enclave_containers": args.count,
        "plain_deployments_seconds": round(plain, 1),
        "operator_seconds": round(measured["seconds"], 1),
        "ratio": round(measured["seconds"] / plain, 3),
        "goal_ratio": 1.25,
        "operator_peak_rss_mib": measured["peak_rss_mib"],
        "operator_cpu_seconds": measured["cpu_seconds"],
        "api_writes_per_enclave_container": round(total_writes / args.count, 2),
        "api_writes_by_kind": {k: int(v) for k, v in sorted(writes.items())},
        # CPU seconds each process spent while each phase was measured (2 cores shared).
        "cpu_seconds_plain": plain_cpu,
        "cpu_seconds_operator": measured["cpu_during"],
        "note": "the operator reads only through its watches (one per resource kind)",
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
