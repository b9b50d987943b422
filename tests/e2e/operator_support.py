"""Helpers of the operator's end-to-end tests: the operator as a subprocess, waiting.

The operator runs exactly as a user runs it, ``kubetee operator --kubeconfig ...``, in
its own process, so tests can kill and restart it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from enclave_runtime.runtime.enclave import load_signer
from tests.e2e.conftest import REPO_ROOT, E2ECluster

T = TypeVar("T")

GROUP, VERSION = "kubetee.io", "v1alpha1"
EPC = "kubetee.io/epc"


class OperatorProcess:
    """``kubetee operator`` against the test cluster, logging into a file."""

    def __init__(self, kubeconfig: Path, log_path: Path) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            # Short debounce: tests wait on status, not on the batching of bursts.
            "KUBETEE_STATUS_DELAY": "0.2",
            "KUBETEE_POOL_DELAY": "0.2",
            # Several operators may run at once on one machine (other test sessions).
            "KUBETEE_METRICS_PORT": "0",
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kubetee.cli",
                    "operator",
                    "--kubeconfig",
                    str(self.kubeconfig),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO_ROOT,
            )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
        self.process = None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float = 90.0,
    operator: OperatorProcess | None = None,
) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.5)
    logs = f"\noperator log:\n{operator.log_tail()}" if operator else ""
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}{logs}")


def install_crds(cluster: E2ECluster) -> None:
    cluster.kubectl("apply", "-f", str(REPO_ROOT / "crds"))
    for name in ("enclavecontainers.kubetee.io", "epcpools.kubetee.io"):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")


@pytest.fixture(scope="module")
def operator(
    cluster: E2ECluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator running for a whole test module (tests may kill and restart it)."""
    install_crds(cluster)
    process = OperatorProcess(
        cluster.kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log"
    )
    process.start()
    try:
        yield process
    finally:
        process.kill(signal.SIGTERM)


class Api:
    """The few API calls the tests make, on the session cluster."""

    def __init__(self, cluster: E2ECluster) -> None:
        self.cluster = cluster
        self.core = client.CoreV1Api(cluster.api)
        self.apps = client.AppsV1Api(cluster.api)
        self.custom = client.CustomObjectsApi(cluster.api)

    def apply(self, manifest: dict[str, Any], namespace: str | None = None) -> None:
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        self.cluster.kubectl(*args, input_text=yaml.safe_dump(manifest))

    def ec(self, namespace: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "enclavecontainers", name
        )
        return found

    def pool(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.custom.get_cluster_custom_object(
            GROUP, VERSION, "epcpools", name
        )
        return found

    def delete_pool(self, name: str) -> None:
        try:
            self.custom.delete_cluster_custom_object(GROUP, VERSION, "epcpools", name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def pods(self, namespace: str, ec: str) -> list[client.V1Pod]:
        pods: list[client.V1Pod] = self.core.list_namespaced_pod(
            namespace, label_selector=f"kubetee.io/enclave-container={ec}"
        ).items
        return [p for p in pods if p.metadata.deletion_timestamp is None]

    def epc_pods(self) -> list[str]:
        """Pods anywhere that hold EPC on a node (bound, not finished)."""
        held = []
        for pod in self.core.list_pod_for_all_namespaces().items:
            if not pod.spec.node_name or pod.status.phase in {"Succeeded", "Failed"}:
                continue
            containers = [*(pod.spec.containers or []), *(pod.spec.init_containers or [])]
            if any(EPC in ((c.resources and c.resources.limits) or {}) for c in containers):
                held.append(f"{pod.metadata.namespace}/{pod.metadata.name}")
        return held


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item["type"] == type_:
            found: dict[str, Any] = item
            return found
    return {}


# Every replica's enclave is signed with KubeTEE's simulation key (no KUBETEE_SIGNER_KEY):
# pinning its MRSIGNER, as every EnclaveContainer must pin something, admits them all.
SIMULATION_MRSIGNER = load_signer(None).mrsigner.hex()
PINNED_POLICY: dict[str, Any] = {"policy": {"mrsigner": [SIMULATION_MRSIGNER]}}


def enclave_container(
    name: str, replicas: int, epc: str = "64Mi", pool: str | None = None, **spec: Any
) -> dict[str, Any]:
    """An EnclaveContainer whose policy pins the simulation signer unless ``attestation``
    is given."""
    spec.setdefault("attestation", PINNED_POLICY)
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "EnclaveContainer",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "epc": epc,
            "template": {"spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}},
            **spec,
        },
    }
    if pool is not None:
        body["spec"]["poolRef"] = {"name": pool}
    return body


def epc_pool(name: str, strategy: str = "BinPack") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "EPCPool",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"kubetee.io/sgx": "true"},
            "epcPerNode": "128Mi",
            "strategy": strategy,
        },
    }


@pytest.fixture
def api(cluster: E2ECluster) -> Api:
    return Api(cluster)


@pytest.fixture
def free_nodes(api: Api) -> None:
    """Start from nodes holding no EPC (earlier tests' replicas may still be going)."""
    held: list[str] = []

    def nothing_held() -> bool:
        held[:] = api.epc_pods()
        return not held

    deadline = time.monotonic() + 120
    while not nothing_held():
        if time.monotonic() > deadline:
            pytest.fail(f"pods of earlier tests still hold EPC after 120s: {held}")
        time.sleep(1)


@pytest.fixture
def pools(api: Api) -> Iterator[Callable[..., str]]:
    """Create EPCPools (cluster-scoped) for one test; deleted afterwards."""
    created: list[str] = []

    def create(name: str, strategy: str = "BinPack") -> str:
        api.apply(epc_pool(name, strategy))
        created.append(name)
        return name

    yield create
    for name in created:
        api.delete_pool(name)
