"""Certificates and keys of the local cluster, generated once per cluster work directory.

Two CAs, as kubeadm lays them out: the cluster CA signs serving certificates and client
certificates (admin in ``system:masters``, the controller-manager, the scheduler, etcd
clients); the front-proxy CA signs only the aggregator's client certificate, so an
aggregated API server can tell proxied requests from direct ones.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kubetee.pki import load_ca, new_ca, new_leaf, write_certificate, write_private_key

_VALIDITY = datetime.timedelta(days=365)
_CA_VALIDITY = 10 * _VALIDITY
_LOCAL_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
_LOCAL_IPS = ("127.0.0.1", "10.96.0.1")


@dataclass(frozen=True)
class KeyPair:
    """Paths of a PEM certificate and its PEM private key."""

    cert: Path
    key: Path

    def exists(self) -> bool:
        return self.cert.exists() and self.key.exists()


def _create_ca(directory: Path, stem: str, common_name: str) -> KeyPair:
    pair = KeyPair(directory / f"{stem}.crt", directory / f"{stem}.key")
    if not pair.exists():
        certificate, key = new_ca(common_name, _CA_VALIDITY)
        write_private_key(pair.key, key)
        write_certificate(pair.cert, certificate)
    return pair


def issue(
    ca: KeyPair,
    directory: Path,
    stem: str,
    common_name: str,
    *,
    organization: str | None = None,
    server: bool = False,
    client: bool = False,
    hosts: tuple[str, ...] = (),
) -> KeyPair:
    """Issue (once) a leaf certificate signed by ``ca``."""
    pair = KeyPair(directory / f"{stem}.crt", directory / f"{stem}.key")
    if not pair.exists():
        ca_cert, ca_key = load_ca(ca.cert, ca.key)
        certificate, key = new_leaf(
            ca_cert, ca_key, common_name, _VALIDITY,
            organization=organization, server=server, client=client, hosts=hosts,
        )  # fmt: skip
        write_private_key(pair.key, key)
        write_certificate(pair.cert, certificate)
    return pair


@dataclass(frozen=True)
class ClusterPKI:
    """Every credential the control plane needs, by role."""

    ca: KeyPair
    front_proxy_ca: KeyPair
    apiserver: KeyPair
    etcd_server: KeyPair
    apiserver_etcd_client: KeyPair
    front_proxy_client: KeyPair
    admin: KeyPair
    controller_manager: KeyPair
    scheduler: KeyPair
    kwok: KeyPair
    node_agent: KeyPair
    service_account_key: Path
    service_account_pub: Path


def _service_account_keys(directory: Path) -> tuple[Path, Path]:
    private, public = directory / "sa.key", directory / "sa.pub"
    if not (private.exists() and public.exists()):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        write_private_key(private, key)
        public.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return private, public


def ensure_pki(directory: Path) -> ClusterPKI:
    """Create what is missing under ``directory`` and return the paths (idempotent)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca = _create_ca(directory, "ca", "kubetee-local-ca")
    front_proxy_ca = _create_ca(directory, "front-proxy-ca", "kubetee-local-front-proxy-ca")
    sa_key, sa_pub = _service_account_keys(directory)
    return ClusterPKI(
        ca=ca,
        front_proxy_ca=front_proxy_ca,
        apiserver=issue(
            ca,
            directory,
            "apiserver",
            "kube-apiserver",
            server=True,
            hosts=_LOCAL_NAMES + _LOCAL_IPS,
        ),
        etcd_server=issue(
            ca,
            directory,
            "etcd-server",
            "etcd",
            server=True,
            client=True,
            hosts=("localhost", "127.0.0.1"),
        ),
        apiserver_etcd_client=issue(
            ca, directory, "apiserver-etcd-client", "kube-apiserver-etcd-client", client=True
        ),
        front_proxy_client=issue(
            front_proxy_ca, directory, "front-proxy-client", "front-proxy-client", client=True
        ),
        admin=issue(
            ca, directory, "admin", "kubetee-admin", organization="system:masters", client=True
        ),
        controller_manager=issue(
            ca, directory, "controller-manager", "system:kube-controller-manager", client=True
        ),
        scheduler=issue(ca, directory, "scheduler", "system:kube-scheduler", client=True),
        # KWOK and the node agents act for the simulated nodes: cluster-admin keeps this simple
        # for a loopback-only development cluster.
        kwok=issue(
            ca, directory, "kwok", "kubetee-kwok", organization="system:masters", client=True
        ),
        node_agent=issue(
            ca,
            directory,
            "node-agent",
            "kubetee-node-agent",
            organization="system:masters",
            client=True,
        ),
        service_account_key=sa_key,
        service_account_pub=sa_pub,
    )
