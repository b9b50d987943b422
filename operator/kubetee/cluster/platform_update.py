"""Local cluster: a microcode (or platform software) update of one simulated node.

What an operator of a real fleet does when Intel publishes a fix: install the microcode
the newest TCB Info's UpToDate level requires. Here the node's platform gets the SVNs of
that level of its family (read from the cluster's PCS), keeps its PPID and keys, and
registers again for a PCK certificate of the new TCB; its running quoting service
switches to it at the next quote and its enclaves keep running.
"""

from __future__ import annotations

from enclave_runtime.quoting.provision import update_platform
from enclave_runtime.sgx.platform import PlatformKeys
from kubetee.cluster.errors import ClusterError
from kubetee.cluster.layout import ClusterLayout
from kubetee.cluster.node_services import platform_dir
from kubetee.cluster.pcs import pcs_dir, register_node
from kubetee.pcs.evaluations import PublishError, load_settings


def update_node_platform(layout: ClusterLayout, node: str) -> dict[str, object]:
    """Bring ``node``'s platform to its family's newest UpToDate level and register it."""
    directory = platform_dir(layout, node)
    try:
        identity = PlatformKeys.load(directory).identity
        settings = load_settings(pcs_dir(layout))
    except (OSError, KeyError, ValueError) as error:
        raise ClusterError(f"node {node} has no simulated platform to update: {error}") from None
    except PublishError as error:
        raise ClusterError(str(error)) from None
    levels = settings.levels_for(identity.fmspc)
    newest = next((level for level in levels if level.status == "UpToDate"), None)
    if newest is None:
        raise ClusterError(f"FMSPC {identity.fmspc.hex().upper()} has no UpToDate level")
    cpusvn = bytes(
        max(have, need) for have, need in zip(identity.cpusvn, newest.components, strict=True)
    )
    try:
        keys = update_platform(directory, cpusvn, max(identity.pcesvn, newest.pcesvn))
    except ValueError as error:
        raise ClusterError(f"node {node}: {error}") from None
    register_node(layout, node, directory)
    return {
        "node": node,
        "fmspc": identity.fmspc.hex().upper(),
        "cpusvn": keys.identity.cpusvn.hex(),
        "pcesvn": keys.identity.pcesvn,
        "tcbEvaluationDataNumber": settings.tcb_evaluation_data_number,
    }
