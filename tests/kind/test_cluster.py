"""The kind cluster itself: real kubelets, containerd, CoreDNS, flannel across nodes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from kubetee.kindcluster.components import COREDNS_VERSION
from kubetee.kindcluster.nodefiles import FLANNEL_IMAGE

from .conftest import Kind, workers

pytestmark = [pytest.mark.e2e, pytest.mark.kind]

T = TypeVar("T")
COREDNS_IMAGE = f"registry.k8s.io/coredns/coredns:{COREDNS_VERSION}"
# A TCP service to reach across nodes: CoreDNS answering on 8053 with its whoami plugin.
SERVER = """\
apiVersion: v1
kind: ConfigMap
metadata: {{name: echo}}
data:
  Corefile: |
    .:8053 {{
      whoami
      log
    }}
---
apiVersion: v1
kind: Pod
metadata: {{name: echo, labels: {{app: echo}}}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  containers:
    - name: coredns
      image: {coredns}
      args: [-conf, /etc/coredns/Corefile]
      volumeMounts: [{{name: config, mountPath: /etc/coredns}}]
  volumes: [{{name: config, configMap: {{name: echo}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: echo}}
spec:
  selector: {{app: echo}}
  ports: [{{port: 8053, protocol: TCP}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {other}}}
  containers:
    - name: shell
      image: {shell}
      command: [sleep, infinity]
"""


def eventually(check: Callable[[], T | None], within: float = 120.0) -> T:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within}s")
        time.sleep(1)


def test_three_nodes_ready_two_of_them_sgx_workers(kind: Kind) -> None:
    nodes = kind.json("get", "nodes")["items"]
    assert len(nodes) == 3
    for node in nodes:
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready[0]["status"] == "True", node["metadata"]["name"]
        assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert len(workers(kind)) == 2


def test_system_pods_run_in_containerd_containers(kind: Kind) -> None:
    pods = kind.json("get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns")["items"]
    assert pods
    ids = [s["containerID"] for p in pods for s in p["status"]["containerStatuses"]]
    assert ids
    assert all(i.startswith("containerd://") for i in ids)


def test_pods_on_two_workers_reach_each_other_by_service_name(
    kind: Kind, kind_namespace: str
) -> None:
    node, other = workers(kind)
    manifest = SERVER.format(node=node, other=other, coredns=COREDNS_IMAGE, shell=FLANNEL_IMAGE)
    kind.kubectl("-n", kind_namespace, "apply", "-f", "-", stdin=manifest)
    kind.kubectl(
        "-n",
        kind_namespace,
        "wait",
        "--for=condition=Ready",
        "pod/echo",
        "pod/client",
        "--timeout=180s",
    )
    pods = {
        p["metadata"]["name"]: p for p in kind.json("-n", kind_namespace, "get", "pods")["items"]
    }
    assert pods["echo"]["spec"]["nodeName"] == node
    assert pods["client"]["spec"]["nodeName"] == other
    echo_ip = pods["echo"]["status"]["podIP"]
    for pod in pods.values():
        (status,) = pod["status"]["containerStatuses"]
        assert status["containerID"].startswith("containerd://")

    # DNS: the Service name resolves to its ClusterIP through CoreDNS
    cluster_ip = kind.json("-n", kind_namespace, "get", "service", "echo")["spec"]["clusterIP"]
    fqdn = f"echo.{kind_namespace}.svc.cluster.local"
    resolved = kind.kubectl("-n", kind_namespace, "exec", "client", "--", "getent", "hosts", fqdn)
    assert resolved.split()[0] == cluster_ip

    # CNI: the client on one worker opens TCP connections to the pod on the other, directly
    # and through the Service (kube-proxy)
    for address in (echo_ip, "echo"):
        kind.kubectl(
            "-n",
            kind_namespace,
            "exec",
            "client",
            "--",
            "bash",
            "-c",
            f"exec 3<>/dev/tcp/{address}/8053",
        )
    # ... and a closed port is refused, so the check above can fail
    refused = kind.run_kubectl(
        "-n",
        kind_namespace,
        "exec",
        "client",
        "--",
        "bash",
        "-c",
        f"exec 3<>/dev/tcp/{echo_ip}/8054",
    )
    assert refused.returncode != 0
    assert "refused" in refused.stderr

    # kubectl logs reaches the kubelet (by InternalIP)
    logs = eventually(
        lambda: (
            text
            if "CoreDNS-" in (text := kind.kubectl("-n", kind_namespace, "logs", "echo"))
            else None
        )
    )
    assert COREDNS_VERSION.lstrip("v") in logs


def test_sgx_device_stand_ins_reach_a_container_through_cri(kind: Kind) -> None:
    """What the kubelet does with the device plugin's Allocate DeviceSpecs, through CRI."""
    node = workers(kind)[0]
    uid = str(int(time.time()))
    pod_config = {
        "metadata": {"name": f"devices-{uid}", "namespace": "default", "uid": uid},
        "log_directory": "/tmp",
        "linux": {},
    }
    container_config = {
        "metadata": {"name": "check"},
        "image": {"image": FLANNEL_IMAGE},
        "command": ["sleep", "600"],
        "log_path": f"devices-{uid}.log",
        "devices": [
            {"container_path": path, "host_path": path, "permissions": "rw"}
            for path in ("/dev/sgx_enclave", "/dev/sgx_provision")
        ],
        "linux": {},
    }
    kind.node_exec(node, "sh", "-c", f"cat > /tmp/pod-{uid}.json", stdin=json.dumps(pod_config))
    kind.node_exec(
        node, "sh", "-c", f"cat > /tmp/ctr-{uid}.json", stdin=json.dumps(container_config)
    )
    sandbox = kind.node_exec(node, "crictl", "runp", f"/tmp/pod-{uid}.json").strip()
    try:
        container = kind.node_exec(
            node, "crictl", "create", sandbox, f"/tmp/ctr-{uid}.json", f"/tmp/pod-{uid}.json"
        ).strip()
        kind.node_exec(node, "crictl", "start", container)
        listing = kind.node_exec(
            node, "crictl", "exec", container, "ls", "-l", "/dev/sgx_enclave", "/dev/sgx_provision"
        )
        assert listing.count("\nc") + listing.startswith("c") == 2, listing  # char devices
    finally:
        kind.node_exec(node, "crictl", "rmp", "--force", sandbox)
