"""The serving certificate of the custom metrics API server, when none is provided.

The kube-apiserver reaches the server as ``<service>.<namespace>.svc`` and checks its
certificate against the APIService's ``caBundle``. Given a directory,
:func:`ensure_serving_certificate` keeps a private CA there (the ``caBundle``) and a
serving certificate it signed for the names the server is reached by; they are made
once and remade when the names change or expiry is near. Keys are written ``0600``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from kubetee.pki import new_ca, new_leaf, write_certificate, write_private_key

VALIDITY = datetime.timedelta(days=365)
RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True)
class ServingCertificate:
    ca_cert: Path
    cert: Path
    key: Path

    def ca_pem(self) -> bytes:
        return self.ca_cert.read_bytes()


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
    ca, ca_key = new_ca("kubetee-metrics-apiserver-ca", VALIDITY)
    cert, key = new_leaf(
        ca,
        ca_key,
        dns_names[0] if dns_names else "",
        VALIDITY,
        server=True,
        hosts=(*dns_names, *ip_addresses),
    )
    write_private_key(paths.key, key)
    write_certificate(paths.cert, cert)
    write_certificate(paths.ca_cert, ca)
    return paths
