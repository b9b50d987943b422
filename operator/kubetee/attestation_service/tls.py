"""TLS material for the attestation service: a private CA and a serving certificate.

The runtime trusts exactly the CA it is handed (``KUBETEE_ATTESTATION_CA``), so a
cluster without cert-manager can still run the service with verified TLS. With
cert-manager, point the service at its Secret instead.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from kubetee.pki import new_ca, new_leaf, write_certificate, write_private_key

CA_FILE = "ca.crt"
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
_CA_LIFETIME = timedelta(days=3650)
_CERT_LIFETIME = timedelta(days=365)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: Path
    certificate: Path
    key: Path

    @classmethod
    def in_dir(cls, directory: Path) -> TlsFiles:
        return cls(directory / CA_FILE, directory / CERT_FILE, directory / KEY_FILE)


def generate(out_dir: Path, hosts: Sequence[str]) -> TlsFiles:
    """Write a new CA and a serving certificate for ``hosts`` (DNS names or IPs)."""
    if not hosts:
        raise ValueError("name at least one host the service is reached by")
    ca, ca_key = new_ca("KubeTEE attestation CA", _CA_LIFETIME)
    certificate, key = new_leaf(ca, ca_key, hosts[0], _CERT_LIFETIME, server=True, hosts=hosts)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = TlsFiles.in_dir(out_dir)
    write_certificate(files.ca, ca)
    write_certificate(files.certificate, certificate)
    write_private_key(files.key, key)
    return files


def server_context(certificate: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(certificate), str(key))
    context.set_alpn_protocols(["http/1.1"])  # the one protocol it speaks, said in the handshake
    return context
