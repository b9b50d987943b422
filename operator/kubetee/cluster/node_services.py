"""Processes the local cluster runs for each simulated node, where a real node has daemons.

A real SGX node runs the kubelet, the EPC device plugin and a quoting service (aesmd).
KWOK nodes have none of them, so each simulated node gets, as local processes:
its quoting service (holding the node's own simulated platform: its own keys, and the
PCK certificate it got by registering with the cluster's simulated PCS), the device
plugin, and the node agent that plays the kubelet's device manager and publishes EPC in
the Node's status. The simulated PCS (:mod:`kubetee.cluster.pcs`) runs once per cluster.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from enclave_runtime.quoting.provision import provision_keys, registered
from kubetee.cluster.layout import ClusterLayout
from kubetee.cluster.pcs import FAMILIES, certified_by_cluster_pcs, register_node
from kubetee.cluster.processes import free_port


def _kubetee(*args: str) -> list[str]:
    return [sys.executable, "-m", "kubetee.cli", *args]


def platform_dir(layout: ClusterLayout, node: str) -> Path:
    """The node's simulated platform: its keys and PCK certificate chain."""
    return layout.node_dir(node) / "sgx-platform"


def plugin_dir(layout: ClusterLayout, node: str) -> Path:
    return layout.node_socket_dir(node) / "device-plugins"


def quoting_socket(layout: ClusterLayout, node: str) -> Path:
    # In a directory of its own: Allocate hands the socket's directory to every replica,
    # which must not see the device-plugin sockets beside it.
    return layout.node_socket_dir(node) / "quoting" / "quoting.sock"


def node_processes(
    layout: ClusterLayout, node: str, kubeconfig: Path
) -> list[tuple[str, list[str]]]:
    """(name, argv) of each process to run for ``node``, in start order.

    The node's platform is made (nodes alternate between the platform families and PCK
    CAs of :data:`FAMILIES`) and registered with the PCS first; registering again on each
    ``up`` restores the node's record should the registry have lost it.
    """
    platform = platform_dir(layout, node)
    if registered(platform) and not certified_by_cluster_pcs(layout, platform):
        shutil.rmtree(platform)  # made before this cluster had its PCS: a new platform
    index = int(node.rsplit("-", 1)[-1]) if node.rsplit("-", 1)[-1].isdigit() else 1
    fmspc, ca = FAMILIES[(index - 1) % len(FAMILIES)]
    provision_keys(platform, node, fmspc=fmspc, ca=ca)
    register_node(layout, node, platform)
    plugins = plugin_dir(layout, node)
    plugins.mkdir(parents=True, exist_ok=True)
    socket = quoting_socket(layout, node)
    # Every node's daemons share this machine, so each gets its own metrics port.
    plugin_metrics = layout.ports.setdefault(f"{node}-device-plugin-metrics", free_port())
    agent_metrics = layout.ports.setdefault(f"{node}-node-agent-metrics", free_port())
    layout.save()
    return [
        (
            "quoting-service",
            _kubetee(
                "quoting-service",
                "serve",
                f"--platform-dir={platform}",
                f"--socket={socket}",
                f"--node={node}",
            ),
        ),
        (
            "device-plugin",
            _kubetee(
                "device-plugin",
                f"--node-name={node}",
                f"--plugin-dir={plugins}",
                f"--epc-mib={layout.epc_mib}",
                f"--enclaves={layout.enclaves}",
                f"--quoting-socket={socket}",
                f"--metrics-port={plugin_metrics}",
            ),
        ),
        (
            "node-agent",
            _kubetee(
                "node-agent",
                f"--node-name={node}",
                f"--plugin-dir={plugins}",
                f"--kubeconfig={kubeconfig}",
                f"--metrics-port={agent_metrics}",
            ),
        ),
    ]
