"""Trust roots: Intel's SGX Root CA (shipped with KubeTEE) and loading of others."""

from __future__ import annotations

import hashlib
from importlib import resources

from cryptography import x509
from cryptography.hazmat.primitives import serialization

# SHA-256 of Intel's SGX Root CA certificate (DER), as Intel publishes it.
INTEL_SGX_ROOT_CA_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"


def intel_sgx_root_ca_der() -> bytes:
    """Intel's SGX Root CA, the trust root of quotes from real SGX hardware."""
    der = (resources.files("kubetee.attestation") / "data" / "intel_sgx_root_ca.der").read_bytes()
    if hashlib.sha256(der).hexdigest() != INTEL_SGX_ROOT_CA_SHA256:
        raise RuntimeError("the packaged Intel SGX Root CA does not match its pinned SHA-256")
    return der


def root_ca_der(data: bytes) -> bytes:
    """A root CA certificate given as DER or PEM, returned as DER.

    Raises ``ValueError`` when ``data`` is neither.
    """
    if data.lstrip().startswith(b"-----BEGIN"):
        certificate = x509.load_pem_x509_certificate(data)
    else:
        certificate = x509.load_der_x509_certificate(data)
    return certificate.public_bytes(serialization.Encoding.DER)
