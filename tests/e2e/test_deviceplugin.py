"""EPC through the real device-plugin protocol: plugin -> node agent -> Node -> scheduler.

Each simulated node runs ``kubetee device-plugin`` and ``kubetee node-agent`` (started by
the local cluster); these tests check what the real API server and kube-scheduler see.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from kubetee.cluster.node_services import plugin_dir
from tests.e2e.conftest import E2ECluster, eventually

pytestmark = pytest.mark.e2e

EPC = "kubetee.io/epc"
ENCLAVE = "kubetee.io/enclave"
SGX_NODES = "kubetee.io/sgx=true"


def _sgx_nodes(core: client.CoreV1Api) -> list[client.V1Node]:
    nodes = core.list_node(label_selector=SGX_NODES).items
    assert nodes, "no SGX nodes in the cluster"
    return nodes


def _resources(core: client.CoreV1Api, node: str) -> tuple[dict[str, str], dict[str, str]]:
    status = core.read_node_status(node).status
    assert status is not None
    return dict(status.capacity or {}), dict(status.allocatable or {})


def _fault(directory: Path, *args: str) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "kubetee.cli",
            "device-plugin",
            "fault",
            "--plugin-dir",
            str(directory),
            *args,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_nodes_advertise_the_configured_epc_and_enclave_slots(cluster: E2ECluster) -> None:
    layout = cluster.local_layout()
    core = client.CoreV1Api(cluster.api)

    for node in _sgx_nodes(core):
        assert node.metadata is not None
        assert node.metadata.name is not None
        capacity, allocatable = _resources(core, node.metadata.name)
        assert capacity[EPC] == str(layout.epc_mib), node.metadata.name
        assert capacity[ENCLAVE] == str(layout.enclaves), node.metadata.name
        # The plugin's extended resources sit beside KWOK's ordinary ones.
        assert capacity["pods"] == "110"
        assert allocatable[EPC] == str(layout.epc_mib)


def test_a_pod_wanting_more_epc_than_any_node_has_stays_pending(
    cluster: E2ECluster, namespace: str
) -> None:
    layout = cluster.local_layout()
    core = client.CoreV1Api(cluster.api)
    too_much = str(layout.epc_mib + 1)
    core.create_namespaced_pod(
        namespace,
        {  # type: ignore[arg-type]
            "metadata": {"name": "too-big"},
            "spec": {
                "containers": [
                    {
                        "name": "enclave",
                        "image": "registry.example/enclave:1",
                        "resources": {"limits": {EPC: too_much}, "requests": {EPC: too_much}},
                    }
                ]
            },
        },
    )

    def unschedulable_message() -> str:
        pod = core.read_namespaced_pod_status("too-big", namespace)
        assert pod.status is not None
        for condition in pod.status.conditions or []:
            if condition.type == "PodScheduled" and condition.reason == "Unschedulable":
                return condition.message or ""
        return ""

    message = eventually(unschedulable_message, within=60)
    assert f"Insufficient {EPC}" in message
    pod = core.read_namespaced_pod("too-big", namespace)
    assert pod.status is not None
    assert pod.status.phase == "Pending"
    assert pod.spec is not None
    assert pod.spec.node_name is None


@pytest.fixture
def faulty_node(cluster: E2ECluster) -> Iterator[tuple[str, Path]]:
    """One SGX node and its plugin dir; the fault is cleared afterwards."""
    layout = cluster.local_layout()
    core = client.CoreV1Api(cluster.api)
    names = sorted(n.metadata.name for n in _sgx_nodes(core) if n.metadata and n.metadata.name)
    node = names[-1]
    directory = plugin_dir(layout, node)
    try:
        yield node, directory
    finally:
        _fault(directory, "--clear")
        eventually(
            lambda: (
                (allocatable := _resources(core, node)[1])[EPC] == str(layout.epc_mib)
                and allocatable[ENCLAVE] == str(layout.enclaves)
            ),
            within=30,
        )


def test_a_fault_on_one_node_lowers_its_allocatable_within_seconds(
    cluster: E2ECluster, faulty_node: tuple[str, Path]
) -> None:
    layout = cluster.local_layout()
    core = client.CoreV1Api(cluster.api)
    node, directory = faulty_node
    others = [
        n.metadata.name
        for n in _sgx_nodes(core)
        if n.metadata and n.metadata.name and n.metadata.name != node
    ]
    healthy_left = str(layout.epc_mib - 32)

    _fault(directory, "--unhealthy-mib", "32", "--unhealthy-enclaves", "1")
    # "Within a few seconds": the plugin polls its dir every 0.2 s and streams at once.
    # Each resource has its own ListAndWatch stream, so the two reach the node apart.
    eventually(
        lambda: (
            (allocatable := _resources(core, node)[1])[EPC] == healthy_left
            and allocatable[ENCLAVE] == str(layout.enclaves - 1)
        ),
        within=8,
    )

    capacity, _ = _resources(core, node)
    assert capacity[EPC] == str(layout.epc_mib)
    for other in others:
        assert _resources(core, other)[1][EPC] == str(layout.epc_mib), other
