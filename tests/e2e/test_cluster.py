"""The local cluster is the real thing: scheduler, controller-manager, CRDs, clean shutdown."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kubetee.cluster.cluster import LocalCluster
from kubetee.cluster.layout import ClusterLayout
from kubetee.cluster.processes import port_open
from tests.e2e.conftest import REPO_ROOT, E2ECluster, eventually

pytestmark = pytest.mark.e2e


def _deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
            },
        },
    }


def _ready_pods(core: client.CoreV1Api, namespace: str, app: str) -> list[client.V1Pod]:
    pods = core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
    return [
        p
        for p in pods
        if p.metadata is not None
        and p.metadata.deletion_timestamp is None
        and p.status is not None
        and p.status.phase == "Running"
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]


def test_nodes_are_ready_sgx_nodes_of_the_real_release(cluster: E2ECluster) -> None:
    nodes = client.CoreV1Api(cluster.api).list_node(label_selector="kubetee.io/sgx=true").items
    assert len(nodes) >= 3
    for node in nodes:
        assert node.status is not None
        assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
        assert node.status.capacity is not None
        assert node.status.capacity["pods"] == "110"
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == "v1.34.4"
    assert version["clientVersion"]["gitVersion"] == "v1.34.4"


def test_deployment_is_scheduled_running_and_replaced(cluster: E2ECluster, namespace: str) -> None:
    apps, core = client.AppsV1Api(cluster.api), client.CoreV1Api(cluster.api)
    apps.create_namespaced_deployment(namespace, _deployment("web", 3))  # type: ignore[arg-type]

    pods = eventually(lambda: (p := _ready_pods(core, namespace, "web")) and len(p) == 3 and p)
    assert all(p.spec is not None and p.spec.node_name for p in pods)
    assert {p.spec.node_name for p in pods} <= {f"sgx-node-{i}" for i in range(1, 10)}

    victim = pods[0].metadata.name
    core.delete_namespaced_pod(victim, namespace, grace_period_seconds=0)
    replaced = eventually(
        lambda: (
            (p := _ready_pods(core, namespace, "web"))
            and len(p) == 3
            and victim not in {x.metadata.name for x in p}
            and p
        )
    )
    assert len({p.metadata.name for p in replaced}) == 3


def test_crds_from_the_repository_are_served_and_explained(cluster: E2ECluster) -> None:
    files = sorted((REPO_ROOT / "crds").glob("*.yaml"))
    assert files, "crds/ holds the project's CustomResourceDefinitions"
    cluster.kubectl("apply", "--server-side", "--force-conflicts", *[f"-f={f}" for f in files])
    for path in files:
        crd = yaml.safe_load(path.read_text())
        name = crd["metadata"]["name"]
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        plural = crd["spec"]["names"]["plural"]
        # The apiserver publishes a new CRD's OpenAPI a moment after it is Established.
        explained = eventually(
            lambda plural=plural: (
                (answer := cluster.kubectl("explain", f"{plural}.spec", check=False)).returncode
                == 0
                and answer.stdout
            ),
            within=60,
        )
        description = schema["properties"]["spec"]["description"]
        first_words = " ".join(description.split()[:6])
        assert first_words in " ".join(explained.split()), explained


def test_down_leaves_no_process_or_port_behind(tmp_path: Path) -> None:
    layout = ClusterLayout.for_name(f"downtest-{os.getpid()}", tmp_path / "cluster")
    local = LocalCluster(layout, out=sys.stderr)
    try:
        local.up(nodes=1)
        pids = [s.pid for s in local.status() if s.pid is not None]
        assert len(pids) >= 5
        assert all(port_open(p) for n, p in layout.ports.items() if n != "etcd-peer")
    finally:
        stopped = local.down(purge=True)

    assert set(stopped) >= {"etcd", "kube-apiserver", "kube-controller-manager", "kwok"}
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    assert not any(port_open(p) for p in layout.ports.values())
    assert not local.is_running()
    assert not layout.workdir.exists()
    assert not layout.socket_dir.exists()


def test_readiness_follows_readiness_gates_as_on_a_kubelet(
    cluster: E2ECluster, namespace: str
) -> None:
    core = client.CoreV1Api(cluster.api)
    gate = "kubetee.io/attested"
    core.create_namespaced_pod(
        namespace,
        {  # type: ignore[arg-type]
            "metadata": {"name": "gated"},
            "spec": {
                "readinessGates": [{"conditionType": gate}],
                "containers": [{"name": "app", "image": "busybox:1.36"}],
            },
        },
    )

    def ready_status() -> str | None:
        pod = core.read_namespaced_pod("gated", namespace)
        if pod.status is None or pod.status.phase != "Running":
            return None
        return next((c.status for c in pod.status.conditions or [] if c.type == "Ready"), None)

    def set_gate(status: str) -> None:
        core.patch_namespaced_pod_status(
            "gated",
            namespace,
            {"status": {"conditions": [{"type": gate, "status": status, "reason": "Test"}]}},
        )

    assert eventually(ready_status) == "False"  # running, but its gate is not True yet
    time.sleep(2)
    assert ready_status() == "False"
    set_gate("True")
    eventually(lambda: ready_status() == "True")
    set_gate("False")
    eventually(lambda: ready_status() == "False")


def test_a_pod_marked_not_ready_is_reported_ready_again(
    cluster: E2ECluster, namespace: str
) -> None:
    """The node lifecycle controller marks pods not Ready while their node is NotReady
    (as when KWOK restarts); like a returning kubelet, KWOK reports them Ready again."""
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(
        namespace,
        {  # type: ignore[arg-type]
            "metadata": {"name": "plain"},
            "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]},
        },
    )

    def ready() -> str | None:
        pod = core.read_namespaced_pod("plain", namespace)
        conditions = (pod.status.conditions if pod.status else None) or []
        return next((c.status for c in conditions if c.type == "Ready"), None)

    eventually(lambda: ready() == "True")
    core.patch_namespaced_pod_status(
        "plain", namespace, {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    )
    eventually(lambda: ready() == "True", within=30)
