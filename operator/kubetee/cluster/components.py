"""Command lines of the control-plane processes, all bound to 127.0.0.1."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from kubetee.cluster.kubeconfig import write_kubeconfig
from kubetee.cluster.layout import ClusterLayout, repo_root
from kubetee.cluster.pki import ClusterPKI, KeyPair
from kubetee.cluster.toolchain import binary_path

SERVICE_CIDR = "10.96.0.0/16"
# Scheduler and controller-manager talk a lot to the apiserver during scale tests.
CLIENT_QPS, CLIENT_BURST = 200, 400
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"


@dataclass(frozen=True)
class Component:
    """A process of the control plane: its name and its argument list."""

    name: str
    args: list[str]


def kwok_stages_source() -> Path:
    return repo_root() / "deploy" / "cluster" / "kwok-stages.yaml"


def scheduler_config_source() -> Path:
    return repo_root() / "deploy" / "cluster" / "scheduler-config.yaml"


def _scheduler_config(layout: ClusterLayout, kubeconfig: Path) -> Path:
    """The repository's scheduler configuration, pointed at this cluster."""
    config = yaml.safe_load(scheduler_config_source().read_text())
    config["clientConnection"] = {
        "kubeconfig": str(kubeconfig),
        "qps": CLIENT_QPS,
        "burst": CLIENT_BURST,
    }
    path = layout.config_dir / "scheduler-config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def control_plane(layout: ClusterLayout, pki: ClusterPKI) -> list[Component]:
    """The processes in start order (each waits for the previous to be ready)."""
    ports = layout.ports
    server = layout.apiserver_url

    def kubeconfig(name: str, client: KeyPair) -> Path:
        return write_kubeconfig(
            layout.config_dir / f"{name}.kubeconfig",
            server=server,
            ca=pki.ca.cert,
            client=client,
            cluster_name=layout.name,
            user=name,
        )

    cm_kubeconfig = kubeconfig("controller-manager", pki.controller_manager)
    scheduler_kubeconfig = kubeconfig("scheduler", pki.scheduler)
    kwok_kubeconfig = kubeconfig("kwok", pki.kwok)
    etcd_url = f"https://127.0.0.1:{ports['etcd']}"
    return [
        Component(
            "etcd",
            [
                str(binary_path("etcd")),
                f"--name={layout.name}",
                f"--data-dir={layout.etcd_data_dir}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{ports['etcd-peer']}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{ports['etcd-peer']}",
                f"--initial-cluster={layout.name}=http://127.0.0.1:{ports['etcd-peer']}",
                f"--cert-file={pki.etcd_server.cert}",
                f"--key-file={pki.etcd_server.key}",
                f"--trusted-ca-file={pki.ca.cert}",
                "--client-cert-auth=true",
                "--listen-metrics-urls=",
                "--quota-backend-bytes=4294967296",
                "--log-level=warn",
            ],
        ),
        Component(
            "kube-apiserver",
            [
                str(binary_path("kube-apiserver")),
                f"--etcd-servers={etcd_url}",
                f"--etcd-cafile={pki.ca.cert}",
                f"--etcd-certfile={pki.apiserver_etcd_client.cert}",
                f"--etcd-keyfile={pki.apiserver_etcd_client.key}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={ports['apiserver']}",
                f"--tls-cert-file={pki.apiserver.cert}",
                f"--tls-private-key-file={pki.apiserver.key}",
                f"--client-ca-file={pki.ca.cert}",
                "--authorization-mode=RBAC",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.service_account_pub}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                "--allow-privileged=true",
                # Aggregation layer: the apiserver proxies to aggregated API servers with the
                # front-proxy client certificate and user headers.
                f"--requestheader-client-ca-file={pki.front_proxy_ca.cert}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki.front_proxy_client.cert}",
                f"--proxy-client-key-file={pki.front_proxy_client.key}",
                # Aggregated API servers here are local processes behind ExternalName
                # Services (localhost), which only the default cluster routing resolves.
                "--max-requests-inflight=800",
                "--max-mutating-requests-inflight=400",
                "--profiling=false",
                "--v=1",
            ],
        ),
        Component(
            "kube-controller-manager",
            [
                str(binary_path("kube-controller-manager")),
                f"--kubeconfig={cm_kubeconfig}",
                f"--authentication-kubeconfig={cm_kubeconfig}",
                f"--authorization-kubeconfig={cm_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports['controller-manager']}",
                f"--cluster-signing-cert-file={pki.ca.cert}",
                f"--cluster-signing-key-file={pki.ca.key}",
                f"--root-ca-file={pki.ca.cert}",
                f"--service-account-private-key-file={pki.service_account_key}",
                "--use-service-account-credentials=true",
                "--controllers=*",
                "--leader-elect=false",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # Short loops so an HPA reacts within seconds in tests and the demo.
                "--horizontal-pod-autoscaler-sync-period=5s",
                "--horizontal-pod-autoscaler-downscale-stabilization=15s",
                f"--kube-api-qps={CLIENT_QPS}",
                f"--kube-api-burst={CLIENT_BURST}",
                "--concurrent-deployment-syncs=20",
                "--concurrent-replicaset-syncs=20",
                "--profiling=false",
                "--v=1",
            ],
        ),
        Component(
            "kube-scheduler",
            [
                str(binary_path("kube-scheduler")),
                f"--config={_scheduler_config(layout, scheduler_kubeconfig)}",
                f"--authentication-kubeconfig={scheduler_kubeconfig}",
                f"--authorization-kubeconfig={scheduler_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports['scheduler']}",
                "--profiling=false",
                "--v=1",
            ],
        ),
        Component(
            "kwok",
            [
                str(binary_path("kwok")),
                f"--kubeconfig={kwok_kubeconfig}",
                f"--config={kwok_stages_source()}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
                "--cidr=10.244.0.1/16",
                "--node-ip=10.244.0.1",
                f"--server-address=127.0.0.1:{ports['kwok']}",
                "--node-lease-duration-seconds=40",
            ],
        ),
    ]
