"""The node image recipe: its cache key, the images kubeadm needs, the files it bakes in."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import yaml

from kubetee.cluster.errors import ClusterError
from kubetee.cluster.toolchain import KUBERNETES_VERSION
from kubetee.kindcluster import components, nodefiles, nodeimage
from kubetee.kindcluster.nodeimage import component_images, node_image_ref

# `kubeadm config images list --kubernetes-version v1.34.4`, as the build asks it.
KUBEADM_IMAGES = [
    "registry.k8s.io/kube-apiserver:v1.34.4",
    "registry.k8s.io/kube-controller-manager:v1.34.4",
    "registry.k8s.io/kube-scheduler:v1.34.4",
    "registry.k8s.io/kube-proxy:v1.34.4",
    "registry.k8s.io/coredns/coredns:v1.12.1",
    "registry.k8s.io/pause:3.10.1",
    "registry.k8s.io/etcd:3.6.5-0",
]


def test_tag_names_the_kubernetes_version_and_is_stable() -> None:
    ref = node_image_ref()
    assert ref.startswith(f"kubetee.local/kind-node:{KUBERNETES_VERSION}-")
    assert node_image_ref() == ref


def test_tag_changes_with_any_version_or_baked_file(monkeypatch: pytest.MonkeyPatch) -> None:
    before = node_image_ref()
    monkeypatch.setattr(nodefiles, "CONTAINERD_CONFIG", nodefiles.CONTAINERD_CONFIG + "#\n")
    after_config = node_image_ref()
    assert after_config != before
    monkeypatch.setattr(nodeimage, "NODE_IMAGE_COMPONENTS", (components.KIND,))
    assert node_image_ref() not in {before, after_config}
    monkeypatch.setattr(nodeimage, "RECIPE_REVISION", nodeimage.RECIPE_REVISION + 1)
    assert node_image_ref() != before


def test_every_image_kubeadm_asks_for_is_made_from_a_built_binary(tmp_path: Path) -> None:
    pause = tmp_path / "pause"
    images = {i.ref: i for i in component_images(KUBEADM_IMAGES, pause)}
    assert set(images) == {*KUBEADM_IMAGES, nodefiles.FLANNEL_IMAGE}
    assert images["registry.k8s.io/pause:3.10.1"].binary == pause
    assert images["registry.k8s.io/etcd:3.6.5-0"].binary.name == "etcd"
    assert images["registry.k8s.io/coredns/coredns:v1.12.1"].path == "/coredns"
    # iptables users get the Debian base, the rest a scratch image with one binary
    tools = {ref for ref, image in images.items() if image.needs_tools}
    assert tools == {"registry.k8s.io/kube-proxy:v1.34.4", nodefiles.FLANNEL_IMAGE}


def test_an_image_kubeadm_asks_for_that_nothing_builds_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match=r"registry\.k8s\.io/kube-foo:v1"):
        component_images([*KUBEADM_IMAGES, "registry.k8s.io/kube-foo:v1"], tmp_path / "pause")


def test_coredns_built_is_the_one_kubeadm_deploys() -> None:
    (coredns,) = [i for i in KUBEADM_IMAGES if "/coredns:" in i]
    assert coredns.endswith(":" + components.COREDNS_VERSION)


def test_containerd_config_restricts_oom_score_adj_and_uses_the_built_pause() -> None:
    text = nodefiles.CONTAINERD_CONFIG.format(pause_image="registry.k8s.io/pause:3.10.1")
    cri = tomllib.loads(text)["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.10.1"
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["options"]["SystemdCgroup"] is True  # as kind's kubelet config expects


def test_flannel_manifest_fills_in_the_pod_subnet_and_uses_the_built_image() -> None:
    text = nodefiles.FLANNEL_MANIFEST
    assert "would you kindly template this file" in text  # kind templates only then
    rendered = text.replace("{{ .PodSubnet }}", "10.244.0.0/16")
    documents = [d for d in yaml.safe_load_all(rendered) if d]
    (config_map,) = [d for d in documents if d["kind"] == "ConfigMap"]
    net_conf = json.loads(config_map["data"]["net-conf.json"])
    assert net_conf == {"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}
    cni = json.loads(config_map["data"]["cni-conf.json"])
    assert [p["type"] for p in cni["plugins"]] == ["flannel", "portmap"]
    (daemonset,) = [d for d in documents if d["kind"] == "DaemonSet"]
    pod = daemonset["spec"]["template"]["spec"]
    images = {c["image"] for c in pod["containers"] + pod["initContainers"]}
    assert images == {nodefiles.FLANNEL_IMAGE}


def test_node_dockerfile_is_valid_after_formatting() -> None:
    text = nodefiles.NODE_DOCKERFILE.format(base="kubetee.local/kind-base:x")
    assert text.startswith("FROM kubetee.local/kind-base:x\n")
    assert 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' in text
    assert '{"path": "/kind/bin/mount-product-files.sh"}' in text
