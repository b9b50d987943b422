"""The Go programs a kind cluster needs beyond the control plane, built like it.

``kubetee cluster build`` already builds kube-apiserver, controller-manager, scheduler,
kubectl and etcd; the node components come from the same ``k8s.io/kubernetes`` release
(sharing Go's module and build caches, so most packages are compiled once).
"""

from __future__ import annotations

from kubetee.cluster.toolchain import ETCD, KUBERNETES, KUBERNETES_VERSION, Component

KIND_VERSION = "v0.30.0"  # the first kind release whose default node is Kubernetes 1.34
CRI_TOOLS_VERSION = "v1.34.0"
# The CoreDNS release kubeadm v1.34 deploys (cmd/kubeadm/app/constants: CoreDNSVersion).
COREDNS_VERSION = "v1.12.1"
# flannel v0.28 needs a tencentcloud SDK release the module proxy refuses (its Tencent
# VPC backend); v0.27.4 is the newest whose every dependency is served.
FLANNEL_VERSION = "v0.27.4"
# kindnetd, kind's default CNI, is not published as a Go module, nor is flannel's CNI
# plugin on its own; containernetworking/plugins v0.9.1 is the last release that still
# carries that plugin (plugins/meta/flannel), which flanneld's subnet file feeds.
FLANNEL_CNI_VERSION = "v0.9.1"

KIND = Component(
    name="kind",
    module="sigs.k8s.io/kind",
    version=KIND_VERSION,
    binaries={"kind": "sigs.k8s.io/kind"},
)
KUBERNETES_NODE = Component(
    name="kubernetes-node",
    module=KUBERNETES.module,
    version=KUBERNETES_VERSION,
    binaries={
        "kubelet": "k8s.io/kubernetes/cmd/kubelet",
        "kubeadm": "k8s.io/kubernetes/cmd/kubeadm",
        "kube-proxy": "k8s.io/kubernetes/cmd/kube-proxy",
    },
    ldflags=KUBERNETES.ldflags,
    sibling_version=KUBERNETES.sibling_version,
)
CRI_TOOLS = Component(
    name="cri-tools",
    module="sigs.k8s.io/cri-tools",
    version=CRI_TOOLS_VERSION,
    binaries={"crictl": "sigs.k8s.io/cri-tools/cmd/crictl"},
    ldflags=lambda v, _mod: [f"-X sigs.k8s.io/cri-tools/pkg/version.Version={v}"],
)
COREDNS = Component(
    name="coredns",
    module="github.com/coredns/coredns",
    version=COREDNS_VERSION,
    binaries={"coredns": "github.com/coredns/coredns"},
)
FLANNEL = Component(
    name="flannel",
    module="github.com/flannel-io/flannel",
    version=FLANNEL_VERSION,
    binaries={"flanneld": "github.com/flannel-io/flannel"},
    ldflags=lambda v, _mod: [f"-X github.com/flannel-io/flannel/pkg/version.Version={v}"],
    cgo=True,  # its UDP backend's proxy is C on amd64; linked against the node's glibc
)
FLANNEL_CNI = Component(
    name="cni-plugins",
    module="github.com/containernetworking/plugins",
    version=FLANNEL_CNI_VERSION,
    binaries={"flannel": "github.com/containernetworking/plugins/plugins/meta/flannel"},
)

# Cheapest first, so a broken proxy shows up before the long builds.
KIND_COMPONENTS: tuple[Component, ...] = (
    KIND,
    FLANNEL_CNI,
    CRI_TOOLS,
    COREDNS,
    KUBERNETES_NODE,
    FLANNEL,
)
# What the node image is made of: ours plus the control plane's.
NODE_IMAGE_COMPONENTS: tuple[Component, ...] = (*KIND_COMPONENTS, KUBERNETES, ETCD)
