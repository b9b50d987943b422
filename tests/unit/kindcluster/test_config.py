"""deploy/kind/kind-config.yaml and the checks `kubetee kind up` makes on a config."""

from __future__ import annotations

import pytest
import yaml

from kubetee.cluster.errors import ClusterError
from kubetee.kindcluster.cluster import SGX_DEVICES, check_config, default_config


def test_shipped_config_has_a_control_plane_and_two_sgx_workers() -> None:
    config = check_config(default_config().read_text())
    nodes = config["nodes"]
    assert isinstance(nodes, list)
    assert [n["role"] for n in nodes] == ["control-plane", "worker", "worker"]
    for worker in nodes[1:]:
        assert worker["labels"]["kubetee.io/sgx"] == "true"
        mounts = {m["containerPath"]: m["hostPath"] for m in worker["extraMounts"]}
        assert dict.fromkeys(SGX_DEVICES, "/dev/null").items() <= mounts.items()


def test_shipped_config_has_the_apiserver_reach_kubelets_by_address() -> None:
    config = yaml.safe_load(default_config().read_text())
    (patch,) = config["kubeadmConfigPatches"]
    cluster_config = yaml.safe_load(patch)
    assert cluster_config["kind"] == "ClusterConfiguration"
    assert cluster_config["apiServer"]["extraArgs"] == {
        "kubelet-preferred-address-types": "InternalIP"
    }


def test_config_without_sgx_workers_is_refused() -> None:
    text = "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n  - role: worker\n"
    with pytest.raises(ClusterError, match=r"no worker labelled kubetee\.io/sgx=true"):
        check_config(text)


def test_sgx_worker_without_device_nodes_is_refused_naming_them() -> None:
    text = (
        "kind: Cluster\nnodes:\n  - role: worker\n    labels: {kubetee.io/sgx: 'true'}\n"
        "    extraMounts:\n      - {hostPath: /dev/null, containerPath: /dev/sgx_enclave}\n"
    )
    with pytest.raises(ClusterError, match="/dev/sgx_provision") as info:
        check_config(text)
    assert "/dev/sgx_enclave," not in str(info.value)


@pytest.mark.parametrize("text", ["kind: [", "- just\n- a list\n", "kind: Pod\n"])
def test_not_a_kind_cluster_config_is_refused(text: str) -> None:
    with pytest.raises(ClusterError, match="kind config"):
        check_config(text)
