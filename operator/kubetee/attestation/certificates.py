"""Certificate chain, CRL and signature checks of the SGX PKI, with specific errors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from kubetee.attestation.errors import (
    CertificateChainInvalidError,
    CollateralExpiredError,
    CollateralInvalidError,
)

ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


@dataclass(frozen=True, slots=True)
class Validity:
    """The time window of one certificate or collateral item, in UNIX seconds."""

    what: str
    is_certificate: bool
    not_before: float
    not_after: float

    def check(self, now: float) -> None:
        kind = "CERTIFICATE" if self.is_certificate else "COLLATERAL"
        if now < self.not_before:
            raise CollateralExpiredError(
                f"{self.what} is not valid before {_iso(self.not_before)} (verification "
                f"time {_iso(now)}): check the clock or fetch collateral for this time",
                code=f"{kind}_NOT_YET_VALID",
            )
        if now > self.not_after:
            raise CollateralExpiredError(
                f"{self.what} expired at {_iso(self.not_after)} (verification time "
                f"{_iso(now)}): fetch fresh collateral from the provisioning service",
                code=f"{kind}_EXPIRED",
            )


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def certificate_validity(certificate: x509.Certificate, what: str) -> Validity:
    return Validity(
        what=what,
        is_certificate=True,
        not_before=certificate.not_valid_before_utc.timestamp(),
        not_after=certificate.not_valid_after_utc.timestamp(),
    )


def load_chain(pem: str | bytes, what: str, *, length: int, code: str) -> list[x509.Certificate]:
    """Load a PEM chain of exactly ``length`` certificates, leaf first."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        chain = x509.load_pem_x509_certificates(data.rstrip(b"\0"))
    except ValueError:
        raise CertificateChainInvalidError(
            f"{what} is not a PEM certificate chain", code=code
        ) from None
    if len(chain) != length:
        raise CertificateChainInvalidError(
            f"{what} has {len(chain)} certificates; expected {length} ending at the root CA",
            code=code,
        )
    return chain


def spki(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def check_pinned_root(root: x509.Certificate, pinned_der: bytes, what: str) -> None:
    if root.public_bytes(serialization.Encoding.DER) != pinned_der:
        raise CertificateChainInvalidError(
            f"{what} ends at {root.subject.rfc4514_string()!r}, which is not the trusted "
            "root CA: pass the root CA that issued this platform's certificates "
            "(--root-ca: Intel's for hardware, the simulator's root for simulated quotes)",
            code="ROOT_CA_MISMATCH",
        )


def check_issued_by(
    certificate: x509.Certificate, issuer: x509.Certificate, what: str, *, code: str
) -> None:
    """Issuer name and signature of ``certificate``, and that ``issuer`` is a CA."""
    try:
        constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    except ValueError:
        raise CertificateChainInvalidError(
            f"the issuer of {what} has malformed extensions", code=code
        ) from None
    if constraints is None or not constraints.ca:
        raise CertificateChainInvalidError(
            f"the issuer of {what} is not a CA certificate", code=code
        )
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        raise CertificateChainInvalidError(
            f"{what} is not signed by {issuer.subject.rfc4514_string()!r}", code=code
        ) from None


def load_crl(der: bytes, issuer: x509.Certificate, what: str) -> x509.CertificateRevocationList:
    """A CRL whose signature by ``issuer`` verifies."""
    try:
        crl = x509.load_der_x509_crl(der)
    except ValueError:
        raise CollateralInvalidError(f"{what} is not a DER CRL", code="CRL_MALFORMED") from None
    if crl.issuer != issuer.subject:
        raise CollateralInvalidError(
            f"{what} is issued by {crl.issuer.rfc4514_string()!r}, expected "
            f"{issuer.subject.rfc4514_string()!r}",
            code="CRL_ISSUER_MISMATCH",
        )
    if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
        raise CollateralInvalidError(
            f"the signature of {what} does not verify", code="CRL_SIGNATURE_INVALID"
        )
    return crl


def crl_validity(crl: x509.CertificateRevocationList, what: str) -> Validity:
    next_update = crl.next_update_utc
    return Validity(
        what=what,
        is_certificate=False,
        not_before=crl.last_update_utc.timestamp(),
        not_after=next_update.timestamp() if next_update is not None else float("inf"),
    )


def der_signature(raw: bytes) -> bytes:
    """The DER form of an r||s ECDSA P-256 signature."""
    return encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


def verify_raw_signature(public_key: ec.EllipticCurvePublicKey, raw: bytes, data: bytes) -> bool:
    try:
        public_key.verify(der_signature(raw), data, ECDSA_SHA256)
    except InvalidSignature:
        return False
    return True


def ec_public_key(certificate: x509.Certificate, what: str) -> ec.EllipticCurvePublicKey:
    key = certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise CertificateChainInvalidError(
            f"{what} does not hold an ECDSA P-256 key", code="CERTIFICATE_KEY_UNSUPPORTED"
        )
    return key
