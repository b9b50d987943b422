"""The serving certificate of the custom metrics API server, when none is provided.

The kube-apiserver reaches the server as ``<service>.<namespace>.svc`` and checks its
certificate against the APIService's ``caBundle``. Given a directory,
:func:`ensure_serving_certificate` keeps a private CA there (the ``caBundle``) and a
serving certificate it signed for the names the server is reached by; they are made
once and remade when the names change or expiry is near. Keys are written ``0600``.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)
RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True)
class ServingCertificate:
    ca_cert: Path
    cert: Path
    key: Path

    def ca_pem(self) -> bytes:
        return self.ca_cert.read_bytes()


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _usable(cert_path: Path, dns_names: tuple[str, ...], ips: tuple[str, ...]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    now = datetime.datetime.now(datetime.UTC)
    names_match = set(sans.get_values_for_type(x509.DNSName)) == set(dns_names) and {
        str(ip) for ip in sans.get_values_for_type(x509.IPAddress)
    } == set(ips)
    return names_match and cert.not_valid_after_utc - now > RENEW_BEFORE


def ensure_serving_certificate(
    directory: Path, dns_names: tuple[str, ...], ip_addresses: tuple[str, ...] = ()
) -> ServingCertificate:
    """A CA and a serving certificate for ``dns_names``/``ip_addresses`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    paths = ServingCertificate(
        directory / "serving-ca.crt", directory / "serving.crt", directory / "serving.key"
    )
    if (
        paths.ca_cert.exists()
        and paths.key.exists()
        and _usable(paths.cert, dns_names, ip_addresses)
    ):
        return paths
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubetee-metrics-apiserver-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0] if dns_names else "")])
        )
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(paths.key, key)
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return paths
