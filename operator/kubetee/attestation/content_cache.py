"""What depends on bytes alone, remembered by those bytes, for every verifier of the process.

What a quote and its collateral carry is mostly the same for many quotes: the platform
family's PCK chain, CRLs, TCB Info and QE Identity. Reading them (PEM and DER, the PCK
certificate's SGX extension, the collateral JSON) and checking their signatures costs
far more than the rest, and both results are functions of the exact bytes: the same
certificate under the same issuer verifies the same way every time. So they are kept
here, keyed by the full content (compared byte for byte, not by a digest), for every
verifier of the process, a fresh, uncached ``QuoteVerifier`` too; so are the verifier's
whole results for a PCK chain and for a collateral (its :func:`shared_table`, keyed by
the trusted root as well). What depends on anything else is checked on every call by
the verifier: validity times, revocation, FMSPC, TCB level, and the quote's own
signatures (QE report, enclave report).

Failures are not remembered (a malformed input is read again and refused again), and
each table is bounded, so unknown content can only push older entries out.
:func:`forget` empties them (the benchmark's cold figure).
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any, Generic, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from enclave_runtime.sgx.pck_extension import SgxExtension
from kubetee.attestation.tcb import QeIdentity, TcbInfo, parse_qe_identity, parse_tcb_info

_ENTRIES = 256
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())

K = TypeVar("K")
V = TypeVar("V")


class BoundedTable(Generic[K, V]):
    """A small thread-safe map that forgets its oldest entry when full."""

    def __init__(self, size: int = _ENTRIES) -> None:
        self._size = size
        self._entries: dict[K, V] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        if self._size <= 0:
            return
        with self._lock:
            while len(self._entries) >= self._size:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_SHARED: list[BoundedTable[Any, Any]] = []


def shared_table() -> BoundedTable[Any, Any]:
    """A table for every verifier of the process, emptied by :func:`forget` with the rest:
    for results that are functions of bytes alone, such as a verified chain."""
    table: BoundedTable[Any, Any] = BoundedTable()
    _SHARED.append(table)
    return table


@lru_cache(maxsize=_ENTRIES)
def pem_certificates(data: bytes) -> tuple[x509.Certificate, ...]:
    """The certificates of a PEM chain (raises what ``cryptography`` raises)."""
    return tuple(x509.load_pem_x509_certificates(data))


@lru_cache(maxsize=_ENTRIES)
def der_crl(data: bytes) -> x509.CertificateRevocationList:
    """A DER CRL, its signature not checked here."""
    return x509.load_der_x509_crl(data)


@lru_cache(maxsize=_ENTRIES)
def sgx_extension(der: bytes) -> SgxExtension:
    """The PCK certificate's SGX extension (its ASN.1 decoding takes milliseconds)."""
    return SgxExtension.from_der(der)


@lru_cache(maxsize=_ENTRIES)
def tcb_info(text: str) -> TcbInfo:
    """TCB Info JSON whose signature the caller has checked."""
    return parse_tcb_info(text)


@lru_cache(maxsize=_ENTRIES)
def qe_identity(text: str) -> QeIdentity:
    """QE Identity JSON whose signature the caller has checked."""
    return parse_qe_identity(text)


@lru_cache(maxsize=_ENTRIES)
def issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> None:
    """``certificate``'s signature verifies under ``issuer``'s key (certificates compare
    and hash by their DER); raises as ``verify_directly_issued_by`` does."""
    certificate.verify_directly_issued_by(issuer)


@lru_cache(maxsize=_ENTRIES)
def crl_signed_by(crl_der: bytes, issuer: x509.Certificate) -> bool:
    """Whether the DER CRL's signature verifies under ``issuer``'s key."""
    return der_crl(crl_der).is_signature_valid(issuer.public_key())  # type: ignore[arg-type]


@lru_cache(maxsize=_ENTRIES)
def raw_signed_by(signer: x509.Certificate, signature: bytes, data: bytes) -> bool:
    """Whether the r||s P-256 ``signature`` over ``data`` verifies under ``signer``'s key."""
    key = signer.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        key.verify(der, data, _ECDSA_SHA256)
    except InvalidSignature:
        return False
    return True


def forget() -> None:
    """Empty every table: the next verification reads and checks everything again."""
    for function in (
        pem_certificates,
        der_crl,
        sgx_extension,
        tcb_info,
        qe_identity,
        issued_by,
        crl_signed_by,
        raw_signed_by,
    ):
        function.cache_clear()
    for table in _SHARED:
        table.clear()
