"""Certificates and keys of the local cluster, generated once per cluster work directory.

Two CAs, as kubeadm lays them out: the cluster CA signs serving certificates and client
certificates (admin in ``system:masters``, the controller-manager, the scheduler, etcd
clients); the front-proxy CA signs only the aggregator's client certificate, so an
aggregated API server can tell proxied requests from direct ones.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=365)
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


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _load(pair: KeyPair) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
    key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)  # noqa: S101 - we wrote it ourselves
    return cert, key


def _create_ca(directory: Path, stem: str, common_name: str) -> KeyPair:
    pair = KeyPair(directory / f"{stem}.crt", directory / f"{stem}.key")
    if pair.cert.exists() and pair.key.exists():
        return pair
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + 10 * _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(pair.key, key)
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
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
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
) -> KeyPair:
    """Issue (once) a leaf certificate signed by ``ca``."""
    pair = KeyPair(directory / f"{stem}.crt", directory / f"{stem}.key")
    if pair.cert.exists() and pair.key.exists():
        return pair
    ca_cert, ca_key = _load(ca)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organization))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if dns_names or ip_addresses:
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_key(pair.key, key)
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
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
        _write_key(private, key)
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
            dns_names=_LOCAL_NAMES,
            ip_addresses=_LOCAL_IPS,
        ),
        etcd_server=issue(
            ca,
            directory,
            "etcd-server",
            "etcd",
            server=True,
            client=True,
            dns_names=("localhost",),
            ip_addresses=("127.0.0.1",),
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
