"""Certificate chain, CRL and signature checks of the SGX PKI, with specific errors."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID

from kubetee.attestation import content_cache
from kubetee.attestation.errors import (
    CertificateChainInvalidError,
    CollateralExpiredError,
    CollateralInvalidError,
)

ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
# What a malformed certificate can raise from the cryptography library when a field is
# read or a signature checked; each becomes a typed refusal, never an escaped exception.
CERTIFICATE_ERRORS = (ValueError, TypeError, x509.InvalidVersion, UnsupportedAlgorithm)
# The PCK certificate profile (Intel SGX PCK Certificate and CRL Profile; QVL 4.1.2.5.5):
# the leaf's subject CN contains this phrase, the CRL issuer's CN contains "CA".
PCK_CN_PHRASE = "SGX PCK Certificate"
CRL_ISSUER_CN_PHRASE = "CA"


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


def subject_of(certificate: x509.Certificate) -> str:
    """The subject for messages; a subject that does not decode is named as such."""
    try:
        return certificate.subject.rfc4514_string()
    except CERTIFICATE_ERRORS:
        return "<undecodable subject>"


def common_name(name: x509.Name) -> str:
    """The first CN of ``name``, or "" when it has none or it does not decode."""
    try:
        values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(values[0].value) if values else ""
    except CERTIFICATE_ERRORS:
        return ""


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def certificate_validity(certificate: x509.Certificate, what: str) -> Validity:
    try:
        not_before = certificate.not_valid_before_utc.timestamp()
        not_after = certificate.not_valid_after_utc.timestamp()
    except (*CERTIFICATE_ERRORS, OverflowError):
        raise CertificateChainInvalidError(
            f"{what} has an unreadable validity period", code="CERTIFICATE_MALFORMED"
        ) from None
    return Validity(what=what, is_certificate=True, not_before=not_before, not_after=not_after)


def load_chain(
    pem: str | bytes, what: str, *, length: int, code: str
) -> tuple[x509.Certificate, ...]:
    """Load a PEM chain of exactly ``length`` certificates, leaf first (read once per
    content: :mod:`kubetee.attestation.content_cache`)."""
    try:
        data = pem.encode("ascii") if isinstance(pem, str) else pem
        chain = content_cache.pem_certificates(data.rstrip(b"\0"))
    except (*CERTIFICATE_ERRORS, UnicodeError):
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


def pck_key_sha256(public_key: ec.EllipticCurvePublicKey) -> str:
    """Hex SHA-256 of a PCK public key's SubjectPublicKeyInfo (DER): how the platform
    registry names a platform's key and the verifier reports the key that signed."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def check_pinned_root(root: x509.Certificate, pinned_der: bytes, what: str) -> None:
    if root.public_bytes(serialization.Encoding.DER) != pinned_der:
        raise CertificateChainInvalidError(
            f"{what} ends at {subject_of(root)!r}, which is not the trusted "
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
    except CERTIFICATE_ERRORS:
        raise CertificateChainInvalidError(
            f"the issuer of {what} has malformed extensions", code=code
        ) from None
    if constraints is None or not constraints.ca:
        raise CertificateChainInvalidError(
            f"the issuer of {what} is not a CA certificate", code=code
        )
    try:
        content_cache.issued_by(certificate, issuer)  # remembered by both certificates' DER
    except (*CERTIFICATE_ERRORS, InvalidSignature):
        raise CertificateChainInvalidError(
            f"{what} is not signed by {subject_of(issuer)!r}", code=code
        ) from None


def load_crl(der: bytes, issuer: x509.Certificate, what: str) -> x509.CertificateRevocationList:
    """A CRL whose signature by ``issuer`` verifies (read and checked once per content)."""
    try:
        crl = content_cache.der_crl(bytes(der))
        same_issuer = crl.issuer == issuer.subject
    except CERTIFICATE_ERRORS:
        raise CollateralInvalidError(f"{what} is not a DER CRL", code="CRL_MALFORMED") from None
    if not same_issuer:
        raise CollateralInvalidError(
            f"{what} is not issued by {subject_of(issuer)!r}", code="CRL_ISSUER_MISMATCH"
        )
    try:
        valid = content_cache.crl_signed_by(bytes(der), issuer)
    except CERTIFICATE_ERRORS:
        valid = False
    if not valid:
        raise CollateralInvalidError(
            f"the signature of {what} does not verify", code="CRL_SIGNATURE_INVALID"
        )
    return crl


def revoked_serials(crl: x509.CertificateRevocationList, what: str) -> frozenset[int]:
    try:
        return frozenset(entry.serial_number for entry in crl)
    except CERTIFICATE_ERRORS:
        raise CollateralInvalidError(
            f"{what} has unreadable entries", code="CRL_MALFORMED"
        ) from None


def crl_validity(crl: x509.CertificateRevocationList, what: str) -> Validity:
    """The CRL's window; a CRL without ``nextUpdate`` never expires and is refused (Intel's
    CRLs always carry one, and an endless CRL could be replayed after a revocation)."""
    try:
        next_update = crl.next_update_utc
        last_update = crl.last_update_utc.timestamp()
    except (*CERTIFICATE_ERRORS, OverflowError):
        raise CollateralInvalidError(f"{what} has unreadable dates", code="CRL_MALFORMED") from None
    if next_update is None:
        raise CollateralInvalidError(
            f"{what} has no nextUpdate: it could be replayed forever; fetch the CRL from the "
            "provisioning service",
            code="CRL_NEXT_UPDATE_MISSING",
        )
    return Validity(
        what=what, is_certificate=False, not_before=last_update, not_after=next_update.timestamp()
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
    try:
        key = certificate.public_key()
    except CERTIFICATE_ERRORS:
        raise CertificateChainInvalidError(
            f"{what} has an unreadable public key", code="CERTIFICATE_KEY_UNSUPPORTED"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise CertificateChainInvalidError(
            f"{what} does not hold an ECDSA P-256 key", code="CERTIFICATE_KEY_UNSUPPORTED"
        )
    return key


E = TypeVar("E", bound=x509.ExtensionType)


def _extension(certificate: x509.Certificate, kind: type[E], what: str) -> E:
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        raise CertificateChainInvalidError(
            f"{what} lacks its {kind.__name__} extension", code="PCK_PROFILE_INVALID"
        ) from None
    except CERTIFICATE_ERRORS:
        raise CertificateChainInvalidError(
            f"{what} has malformed extensions", code="PCK_PROFILE_INVALID"
        ) from None


def check_pck_profile(pck: x509.Certificate, ca: x509.Certificate, root: x509.Certificate) -> None:
    """The profile Intel issues PCK chains with: the leaf is an end entity whose CN names an
    SGX PCK Certificate and whose key signs (digitalSignature); the PCK CA signs
    certificates and CRLs with path length 0, the root with path length at most 1."""
    if PCK_CN_PHRASE not in common_name(pck.subject):
        raise CertificateChainInvalidError(
            f"the PCK certificate's subject CN does not contain {PCK_CN_PHRASE!r}",
            code="PCK_PROFILE_INVALID",
        )
    leaf = _extension(pck, x509.BasicConstraints, "the PCK certificate")
    usage = _extension(pck, x509.KeyUsage, "the PCK certificate")
    if leaf.ca or not usage.digital_signature or usage.key_cert_sign:
        raise CertificateChainInvalidError(
            "the PCK certificate is not an end-entity signing certificate (basicConstraints "
            "CA must be false, keyUsage digitalSignature set and keyCertSign clear)",
            code="PCK_PROFILE_INVALID",
        )
    for certificate, what, max_path in ((ca, "the PCK CA", 0), (root, "the root CA", 1)):
        constraints = _extension(certificate, x509.BasicConstraints, what)
        ca_usage = _extension(certificate, x509.KeyUsage, what)
        path = constraints.path_length
        if (
            not constraints.ca
            or not ca_usage.key_cert_sign
            or (path is not None and path > max_path)
        ):
            raise CertificateChainInvalidError(
                f"{what} certificate does not have the CA profile (CA true, keyCertSign, "
                f"path length at most {max_path})",
                code="PCK_PROFILE_INVALID",
            )


def check_crl_issuer_profile(issuer: x509.Certificate, what: str) -> None:
    """QVL 4.1.2.5.7: the PCK CRL's issuer names a CA in its CN."""
    if CRL_ISSUER_CN_PHRASE not in common_name(issuer.subject):
        raise CollateralInvalidError(
            f"{what}'s issuer CN does not contain {CRL_ISSUER_CN_PHRASE!r}",
            code="PCK_CRL_ISSUER_INVALID",
        )
