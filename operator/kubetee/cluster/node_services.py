"""Processes the local cluster runs for each simulated node, where a real node has daemons.

On a real SGX node the kubelet, the EPC device plugin and the quoting service run there;
KWOK nodes have none of them, so the local cluster runs them as local processes.
"""

from __future__ import annotations

from pathlib import Path

from kubetee.cluster.layout import ClusterLayout


def node_processes(
    layout: ClusterLayout, node: str, kubeconfig: Path
) -> list[tuple[str, list[str]]]:
    """(name, argv) of each process to run for ``node``."""
    del layout, node, kubeconfig
    return []
