"""The kind cluster itself: real kubelets, containerd, CoreDNS, flannel across nodes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
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


DEVICE_POD = """\
apiVersion: v1
kind: Pod
metadata: {{name: enclave}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  containers:
    - name: shell
      image: {shell}
      command: [sleep, infinity]
      resources:
        limits: {{kubetee.io/epc: "4", kubetee.io/enclave: "1"}}
"""


def test_pod_gets_the_device_plugins_sgx_devices_from_a_real_kubelet(
    kind: Kind, kind_namespace: str, tmp_path: Path
) -> None:
    """KubeTEE's device plugin registers with a worker's kubelet; its Allocate DeviceSpecs
    (/dev/sgx_enclave, /dev/sgx_provision) must exist on the node for the pod to start."""
    node = workers(kind)[0]
    # The plugin runs here, with its sockets in the node's kubelet directory (the node's
    # /var is a Docker volume), reached through a short link: Unix socket paths are short.
    var = kind.docker_json("inspect", node)[0]["Mounts"]
    (volume,) = [m["Source"] for m in var if m["Destination"] == "/var"]
    plugin_dir = tmp_path / "dp"
    plugin_dir.symlink_to(Path(volume) / "lib/kubelet/device-plugins")
    log = tmp_path / "device-plugin.log"
    with log.open("w") as log_file:
        plugin = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kubetee.cli",
                "device-plugin",
                "--node-name",
                node,
                "--plugin-dir",
                str(plugin_dir),
                "--metrics-port",
                "0",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # It runs on this machine, where the node's quoting socket is not: its check
            # would mark every enclave slot unhealthy (the e2e fault tests cover it).
            env={**os.environ, "KUBETEE_CHECK_QUOTING": "false"},
        )
    try:
        eventually(
            lambda: kind.json("get", "node", node)["status"]["allocatable"].get("kubetee.io/epc")
        )
        manifest = DEVICE_POD.format(node=node, shell=FLANNEL_IMAGE)
        kind.kubectl("-n", kind_namespace, "apply", "-f", "-", stdin=manifest)
        kind.kubectl(
            "-n", kind_namespace, "wait", "--for=condition=Ready", "pod/enclave", "--timeout=120s"
        )
        listing = kind.kubectl(
            "-n",
            kind_namespace,
            "exec",
            "enclave",
            "--",
            "stat",
            "-c",
            "%F %n",
            "/dev/sgx_enclave",
            "/dev/sgx_provision",
        )
        assert listing.splitlines() == [
            "character special file /dev/sgx_enclave",
            "character special file /dev/sgx_provision",
        ]
        env = kind.kubectl("-n", kind_namespace, "exec", "enclave", "--", "env")
        assert "KUBETEE_EPC_MIB=4" in env.splitlines(), log.read_text()
    finally:
        plugin.terminate()
        plugin.wait(timeout=30)
