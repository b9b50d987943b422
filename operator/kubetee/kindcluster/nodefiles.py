"""Text files baked into the kind node image: containerd's config, Dockerfiles, the CNI.

Kept as text here (not generated piecemeal) so their content is part of the node
image's cache key: a change to any of them builds a new image tag.
"""

from __future__ import annotations

from kubetee.kindcluster.components import FLANNEL_VERSION

# The debootstrap base: kind's base image packages (images/base/Dockerfile) with Debian's
# containerd, runc and CNI plugins instead of kind's own builds of them.
ROOTFS_SUITE = "bookworm"
ROOTFS_PACKAGES = (
    "systemd",
    "conntrack",
    "iptables",
    "nftables",
    "iproute2",
    "ethtool",
    "util-linux",
    "mount",
    "kmod",
    "libseccomp2",
    "pigz",
    "bash",
    "ca-certificates",
    "jq",
    "procps",
    "containerd",
    "runc",
    "containernetworking-plugins",
)

FLANNEL_IMAGE = f"kubetee.local/flannel:{FLANNEL_VERSION}"

# Debian's containerd is 1.6, which reads config version 2 (kind's own config targets
# containerd 2). restrict_oom_score_adj: these machines lack CAP_SYS_RESOURCE, and
# without it every pod sandbox fails ("can't get final child's PID from pipe").
CONTAINERD_CONFIG = """\
version = 2

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  tolerate_missing_hugepages_controller = true
  restrict_oom_score_adj = true

[plugins."io.containerd.grpc.v1.cri".containerd]
  discard_unpacked_layers = true
  # kind's entrypoint rewrites this line where overlayfs cannot be used
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  base_runtime_spec = "/etc/containerd/cri-base.json"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    SystemdCgroup = true

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/opt/cni/bin"
  conf_dir = "/etc/cni/net.d"
"""

# An image holding one static binary (control-plane components, etcd, CoreDNS, pause).
STATIC_IMAGE_DOCKERFILE = """\
FROM scratch
COPY {binary} {path}
ENV PATH=/usr/local/bin:/usr/bin:/bin
ENTRYPOINT ["{path}"]
"""

# kube-proxy and flanneld call iptables: their images start from the Debian base.
TOOLS_IMAGE_DOCKERFILE = """\
FROM {base}
COPY {binary} {path}
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT ["{path}"]
"""

# As kind's images/base/Dockerfile, over the debootstrap base instead of debian-slim.
NODE_DOCKERFILE = """\
FROM {base}
COPY files/ /
RUN set -e; \\
    chmod 755 /usr/local/bin/* /kind/bin/*; \\
    ln -sf /usr/bin/containerd /usr/local/bin/containerd; \\
    mkdir -p /opt/cni/bin /etc/cni/net.d /etc/kubernetes/manifests; \\
    for plugin in /usr/lib/cni/*; do ln -sf "$plugin" /opt/cni/bin/; done; \\
    mv /kind/flannel /opt/cni/bin/flannel; \\
    find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete; \\
    rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \\
      /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \\
      /lib/systemd/system/sockets.target.wants/*initctl* \\
      /lib/systemd/system/basic.target.wants/*; \\
    echo "ReadKMsg=no" >> /etc/systemd/journald.conf; \\
    ln -sf "$(command -v systemd || echo /lib/systemd/systemd)" /sbin/init; \\
    systemctl enable kubelet.service containerd.service undo-mount-hacks.service; \\
    systemctl mask systemd-binfmt.service; \\
    ctr oci spec \\
      | jq '.hooks.createContainer += [{{"path": "/kind/bin/mount-product-files.sh"}}]' \\
      | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json
ENV container=docker PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
"""

# kind applies /kind/manifests/default-cni.yaml when a cluster is created, filling in the
# pod subnet where the file asks for it (the marker comment below, as kind's own does).
# flanneld with the kube subnet manager routes each node's podCIDR to that node
# (host-gw: the nodes share the Docker bridge); the flannel CNI plugin then wires pods
# to a bridge with addresses from the node's range.
FLANNEL_MANIFEST = """\
# flannel as this node image's default CNI (adapted from flannel's kube-flannel.yml).
# would you kindly template this file
---
apiVersion: v1
kind: Namespace
metadata:
  name: kube-flannel
  labels:
    pod-security.kubernetes.io/enforce: privileged
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: flannel
rules:
  - apiGroups: [""]
    resources: [pods]
    verbs: [get]
  - apiGroups: [""]
    resources: [nodes]
    verbs: [get, list, watch]
  - apiGroups: [""]
    resources: [nodes/status]
    verbs: [patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: flannel
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: flannel
subjects:
  - kind: ServiceAccount
    name: flannel
    namespace: kube-flannel
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: flannel
  namespace: kube-flannel
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: kube-flannel-cfg
  namespace: kube-flannel
data:
  cni-conf.json: |
    {
      "name": "cbr0",
      "cniVersion": "0.3.1",
      "plugins": [
        {"type": "flannel", "delegate": {"hairpinMode": true, "isDefaultGateway": true}},
        {"type": "portmap", "capabilities": {"portMappings": true}}
      ]
    }
  net-conf.json: |
    {
      "Network": "{{ .PodSubnet }}",
      "Backend": {"Type": "host-gw"}
    }
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: kube-flannel-ds
  namespace: kube-flannel
  labels:
    app: flannel
spec:
  selector:
    matchLabels:
      app: flannel
  template:
    metadata:
      labels:
        app: flannel
    spec:
      hostNetwork: true
      priorityClassName: system-node-critical
      tolerations:
        - operator: Exists
      serviceAccountName: flannel
      initContainers:
        - name: install-cni
          image: FLANNEL_IMAGE
          command: [cp, -f, /etc/kube-flannel/cni-conf.json, /etc/cni/net.d/10-flannel.conflist]
          volumeMounts:
            - {name: cni, mountPath: /etc/cni/net.d}
            - {name: flannel-cfg, mountPath: /etc/kube-flannel/}
      containers:
        - name: kube-flannel
          image: FLANNEL_IMAGE
          command: [/opt/bin/flanneld, --ip-masq, --kube-subnet-mgr, --healthz-port=8081]
          readinessProbe:
            httpGet: {path: /healthz, port: 8081}
            periodSeconds: 5
          resources:
            requests: {cpu: 50m, memory: 50Mi}
          securityContext:
            privileged: false
            capabilities:
              add: [NET_ADMIN, NET_RAW]
          env:
            - name: POD_NAME
              valueFrom: {fieldRef: {fieldPath: metadata.name}}
            - name: POD_NAMESPACE
              valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
          volumeMounts:
            - {name: run, mountPath: /run/flannel}
            - {name: flannel-cfg, mountPath: /etc/kube-flannel/}
            - {name: xtables-lock, mountPath: /run/xtables.lock}
      volumes:
        - name: run
          hostPath: {path: /run/flannel}
        - name: cni
          hostPath: {path: /etc/cni/net.d}
        - name: flannel-cfg
          configMap: {name: kube-flannel-cfg}
        - name: xtables-lock
          hostPath: {path: /run/xtables.lock, type: FileOrCreate}
""".replace("FLANNEL_IMAGE", FLANNEL_IMAGE)
