"""Verification of SGX DCAP ECDSA v3 quotes, in the order of Intel's Quote Verification Library.

1. the quote parses (strict v3, attestation key type 2, certification data type 5) and
   its Quoting Enclave is Intel's (QE vendor ID);
2. the PCK chain ends at the pinned root CA, each certificate is signed by the next, and
   the chain has the PCK profile (leaf CN, key usage, CA path lengths);
3. collateral: issuer chains end at the pinned root; root CA CRL and PCK CRL signed by
   their issuers (a CA named in the PCK CRL issuer's CN; both CRLs with ``nextUpdate``);
   TCB Info (tcbType 0) and QE Identity signed by the TCB Signing certificate;
4. every certificate, CRL and collateral item is valid at the verification time;
5. neither the PCK certificate nor an intermediate CA is revoked;
6. the PCK certificate's FMSPC and PCE-ID are those of the TCB Info;
7. the QE report is signed by the PCK key;
8. the QE report data binds SHA-256(attestation key || QE auth data);
9. the QE report matches the QE Identity (MISCSELECT, attributes, MRSIGNER, product),
   giving the QE's TCB level;
10. the attestation key signs the quote header and the enclave's report body;
11. the platform's TCB level (first level reached by the PCK certificate's 16 SGX TCB
    components and PCESVN), converged with the QE's; Revoked is refused.

What depends only on bytes is remembered. For every verifier of the process (a fresh,
uncached one too): the verified collateral (keyed by the trusted root and the whole
collateral) and verified PCK chains (keyed by the root and the exact chain bytes), see
also :mod:`.content_cache`. Per ``QuoteVerifier``: their pairing (revocation, FMSPC,
TCB level; keyed by both), parsed attestation keys and QE reports whose PCK signature
verified (keyed by the chain, the report and the signature: a platform's QE report is
the same in all its quotes). A changed CRL or TCB Info is a different key, so it is
verified afresh. The verification time and the signature over each quote's own header
and report body are checked on each call.

Every input gets a ``QuoteVerificationError``: what the cryptography library raises for
a malformed certificate, CRL or text is turned into one where it is read, and a last
guard turns anything it missed into ``EVIDENCE_UNREADABLE`` rather than let it escape.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from enclave_runtime.sgx.pck_extension import SGX_EXTENSION_OID, PckExtensionError, SgxExtension
from enclave_runtime.sgx.quote import (
    INTEL_QE_VENDOR_ID,
    ISV_SIGNED_SIZE,
    REPORT_BODY_SIZE,
    SIGNATURE_SIZE,
    Quote,
    QuoteFormatError,
    parse_quote,
)
from kubetee.attestation import certificates as certs
from kubetee.attestation import content_cache
from kubetee.attestation.collateral import Collateral
from kubetee.attestation.content_cache import BoundedTable
from kubetee.attestation.errors import (
    CertificateChainInvalidError,
    CertificateRevokedError,
    CollateralInvalidError,
    QuoteMalformedError,
    QuoteSignatureInvalidError,
    QuoteVerificationError,
    TcbNotSupportedError,
    VerificationTimeInvalidError,
)
from kubetee.attestation.tcb import QeIdentity, TcbInfo, TcbLevel, converge
from kubetee.attestation.verified import VerifiedQuote

__all__ = ["QuoteVerifier", "VerifiedQuote", "verify_quote"]

_SGX_EXTENSION = x509.ObjectIdentifier(SGX_EXTENSION_OID)
# Where the QE report sits in a quote: after the ISV signature and the attestation key.
_QE_REPORT_OFFSET = ISV_SIGNED_SIZE + 4 + SIGNATURE_SIZE + 64


@dataclass(frozen=True, slots=True)
class _TrustedCollateral:
    tcb_info: TcbInfo
    qe_identity: QeIdentity
    revoked_pck_serials: frozenset[int]
    revoked_ca_serials: frozenset[int]
    pck_crl_issuer_key: bytes
    validity: tuple[certs.Validity, ...]
    not_before: float
    not_after: float


@dataclass(frozen=True, slots=True)
class _TrustedPckChain:
    pck_key: ec.EllipticCurvePublicKey
    pck_key_sha256: str
    extension: SgxExtension
    pck_serial: int
    ca_serial: int
    ca_key: bytes
    validity: tuple[certs.Validity, ...]
    not_before: float
    not_after: float


@dataclass(frozen=True, slots=True)
class _Context:
    """A PCK chain checked against one collateral: trusted, unrevoked, same FMSPC."""

    chain: _TrustedPckChain
    collateral: _TrustedCollateral
    tcb_level: TcbLevel | None
    validity: tuple[certs.Validity, ...]
    not_before: float
    not_after: float
    valid_until: datetime


# PCK chains and collateral that verified, for every verifier of the process: each is a
# function of its bytes and the trusted root alone (whose DER is part of the key); times,
# revocation and the pairing with a quote are checked per call.
_TRUSTED_CHAINS: BoundedTable[tuple[bytes, bytes], _TrustedPckChain] = content_cache.shared_table()
_TRUSTED_COLLATERAL: BoundedTable[tuple[bytes, Collateral], _TrustedCollateral] = (
    content_cache.shared_table()
)


# Verification times are UNIX seconds from 1970 to the end of year 9999 (what datetime holds).
_LATEST = 253402300799.0
# Raised by the standard library on bytes it cannot read; turned into a typed refusal.
_UNREADABLE = (
    ValueError,
    TypeError,
    UnicodeError,
    RecursionError,
    OverflowError,
    x509.InvalidVersion,
)


def _timestamp(now: object) -> float:
    """The verification time in UNIX seconds; NaN, infinities, naive or absurd times are
    refused (a NaN would pass every ``not_before <= now <= not_after`` comparison)."""
    if now is None:
        return time.time()
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise VerificationTimeInvalidError("the verification time must be timezone-aware")
        moment = now.timestamp()
    elif isinstance(now, int | float) and not isinstance(now, bool):
        try:
            moment = float(now)
        except OverflowError:
            moment = math.inf
    else:
        raise VerificationTimeInvalidError(
            f"the verification time must be a datetime or UNIX seconds, not {type(now).__name__}"
        )
    if not (math.isfinite(moment) and 0 <= moment <= _LATEST):
        raise VerificationTimeInvalidError(
            "the verification time must be a finite moment between 1970 and 9999"
        )
    return moment


def _windows(validity: tuple[certs.Validity, ...]) -> tuple[float, float]:
    return max(v.not_before for v in validity), min(v.not_after for v in validity)


def _check_time(validity: tuple[certs.Validity, ...], start: float, end: float, now: float) -> None:
    if start <= now <= end:
        return
    for item in validity:
        item.check(now)


class QuoteVerifier:
    """Verifies quotes against collateral, trusting exactly one root CA (DER)."""

    def __init__(self, root_ca_der: bytes, *, cache_size: int = 256) -> None:
        try:
            self._root = x509.load_der_x509_certificate(root_ca_der)
        except ValueError:
            raise CertificateChainInvalidError(
                "the trusted root CA is not a DER certificate", code="ROOT_CA_INVALID"
            ) from None
        self._root_der = bytes(root_ca_der)
        self._context_cache: BoundedTable[tuple[Collateral, bytes], _Context] = BoundedTable(
            cache_size
        )
        self._attestation_keys: BoundedTable[bytes, ec.EllipticCurvePublicKey] = BoundedTable(
            cache_size
        )
        self._signed_qe_reports: BoundedTable[tuple[bytes, bytes, bytes], bool] = BoundedTable(
            cache_size
        )

    def verify(
        self,
        quote: bytes,
        collateral: Collateral,
        *,
        now: int | float | datetime | None = None,
        parsed: Quote | None = None,
    ) -> VerifiedQuote:
        """Verify ``quote`` at time ``now`` (default: the current time).

        ``parsed``: what ``parse_quote`` read from these very bytes, if the caller has
        read them already (to find the platform's collateral): not read a second time.

        Raises a ``QuoteVerificationError`` subclass naming the first failed check.
        """
        moment = _timestamp(now)
        if not isinstance(quote, bytes | bytearray | memoryview):
            raise QuoteMalformedError("the quote must be bytes", code="QUOTE_MALFORMED")
        if not isinstance(collateral, Collateral):
            raise CollateralInvalidError(
                "the collateral must be a Collateral", code="COLLATERAL_MALFORMED"
            )
        try:
            return self._verify(bytes(quote), parsed, collateral, moment)
        except QuoteVerificationError:
            raise
        except _UNREADABLE as error:
            # A defect no specific check names: still a refusal, never an escaped exception.
            raise QuoteVerificationError(
                f"the evidence or collateral could not be read ({type(error).__name__})",
                code="EVIDENCE_UNREADABLE",
            ) from None

    def trusted_tcb(
        self, collateral: Collateral, *, now: int | float | datetime | None = None
    ) -> tuple[TcbInfo, QeIdentity]:
        """The TCB Info and QE Identity of ``collateral``, once their signatures, chains to
        the root and validity at ``now`` are checked (no quote needed): what a platform of
        known SVNs is judged by."""
        moment = _timestamp(now)
        try:
            trusted = self._trusted_collateral(collateral)
        except QuoteVerificationError:
            raise
        except _UNREADABLE as error:
            raise CollateralInvalidError(
                f"the collateral could not be read ({type(error).__name__})",
                code="COLLATERAL_MALFORMED",
            ) from None
        _check_time(trusted.validity, trusted.not_before, trusted.not_after, moment)
        return trusted.tcb_info, trusted.qe_identity

    def _verify(
        self, data: bytes, parsed: Quote | None, collateral: Collateral, moment: float
    ) -> VerifiedQuote:
        if parsed is None:
            parsed = read_quote(data)
        if parsed.header.qe_vendor_id != INTEL_QE_VENDOR_ID:
            raise QuoteMalformedError(
                f"the quote's QE vendor ID {parsed.header.qe_vendor_id.hex()} is not Intel's "
                f"({INTEL_QE_VENDOR_ID.hex()}): only Intel's Quoting Enclave is supported",
                code="QE_VENDOR_UNSUPPORTED",
            )

        context = self._context_cache.get((collateral, parsed.certification_data))
        if context is None:
            context = self._context(parsed.certification_data, collateral, moment)
        elif not context.not_before <= moment <= context.not_after:
            _check_time(context.validity, context.not_before, context.not_after, moment)
        chain = context.chain
        trusted = context.collateral

        qe_report_bytes = data[_QE_REPORT_OFFSET : _QE_REPORT_OFFSET + REPORT_BODY_SIZE]
        # A platform's QE report (and its signature) is the same in all its quotes: the
        # exact bytes, with the chain that names the PCK key, were verified once.
        signed_qe_report = (parsed.certification_data, qe_report_bytes, parsed.qe_report_signature)
        if self._signed_qe_reports.get(signed_qe_report) is None:
            if not certs.verify_raw_signature(
                chain.pck_key, parsed.qe_report_signature, qe_report_bytes
            ):
                raise QuoteSignatureInvalidError(
                    "the QE report is not signed by the platform's PCK key",
                    code="QE_REPORT_SIGNATURE_INVALID",
                )
            self._signed_qe_reports.put(signed_qe_report, True)
        binding = hashlib.sha256(parsed.attestation_key + parsed.qe_auth_data).digest()
        if parsed.qe_report.report_data[:32] != binding or any(parsed.qe_report.report_data[32:]):
            raise QuoteSignatureInvalidError(
                "the attestation key is not the one the quoting enclave certified",
                code="ATTESTATION_KEY_MISMATCH",
            )
        qe_level = trusted.qe_identity.check(parsed.qe_report)

        attestation_key = self._attestation_keys.get(parsed.attestation_key)
        if attestation_key is None:
            try:
                attestation_key = ec.EllipticCurvePublicKey.from_encoded_point(
                    ec.SECP256R1(), b"\x04" + parsed.attestation_key
                )
            except ValueError:
                raise QuoteSignatureInvalidError(
                    "the attestation key is not a P-256 point", code="ATTESTATION_KEY_INVALID"
                ) from None
            self._attestation_keys.put(parsed.attestation_key, attestation_key)
        if not certs.verify_raw_signature(
            attestation_key, parsed.signature, data[:ISV_SIGNED_SIZE]
        ):
            raise QuoteSignatureInvalidError(
                "the enclave report in the quote is not signed by the attestation key "
                "(the report body or header was altered)",
                code="ISV_SIGNATURE_INVALID",
            )

        level = context.tcb_level
        if level is None:
            raise TcbNotSupportedError(
                "the platform's TCB is below every level of the TCB Info",
                code="TCB_LEVEL_NOT_FOUND",
            )
        status = converge(level.status, qe_level.status)
        if status == "Revoked":
            raise TcbNotSupportedError(
                "the platform's TCB level is Revoked (platform "
                f"{level.status}, quoting enclave {qe_level.status}): it cannot be trusted "
                "until its microcode and software are updated",
                code="TCB_REVOKED",
            )
        advisories = level.advisory_ids + tuple(
            a for a in qe_level.advisory_ids if a not in level.advisory_ids
        )
        body = parsed.report_body
        return VerifiedQuote(
            tcb_status=status,
            advisory_ids=advisories,
            mrenclave=body.mrenclave,
            mrsigner=body.mrsigner,
            isv_prod_id=body.isv_prod_id,
            isv_svn=body.isv_svn,
            debug=body.debug,
            report_data=body.report_data,
            config_id=body.config_id,
            fmspc=chain.extension.fmspc,
            valid_until=context.valid_until,
            tcb_evaluation_data_number=min(
                trusted.tcb_info.tcb_evaluation_data_number,
                trusted.qe_identity.tcb_evaluation_data_number,
            ),
            ppid=chain.extension.ppid,
            pck_key_sha256=chain.pck_key_sha256,
        )

    def _context(self, certification_data: bytes, collateral: Collateral, now: float) -> _Context:
        """Steps 2 to 6 for one PCK chain with one collateral; cached when they pass."""
        chain = self._trusted_chain(certification_data)
        trusted = self._trusted_collateral(collateral)

        validity = trusted.validity + chain.validity
        start, end = _windows(validity)
        _check_time(validity, start, end, now)
        self._check_revocation(chain, trusted)
        extension = chain.extension
        tcb_info = trusted.tcb_info
        if extension.fmspc != tcb_info.fmspc:
            raise CollateralInvalidError(
                f"the collateral's TCB Info is for FMSPC {tcb_info.fmspc.hex().upper()}, the "
                f"platform's is {extension.fmspc.hex().upper()}: fetch collateral for this "
                "platform",
                code="FMSPC_MISMATCH",
            )
        if extension.pce_id != tcb_info.pce_id:
            raise CollateralInvalidError(
                f"the TCB Info is for PCE-ID {tcb_info.pce_id.hex()}, the platform's is "
                f"{extension.pce_id.hex()}",
                code="PCE_ID_MISMATCH",
            )
        context = _Context(
            chain=chain,
            collateral=trusted,
            tcb_level=tcb_info.matching_level(extension.tcb_components, extension.pcesvn),
            validity=validity,
            not_before=start,
            not_after=end,
            valid_until=datetime.fromtimestamp(end, UTC),
        )
        self._context_cache.put((collateral, certification_data), context)
        return context

    def _trusted_chain(self, certification_data: bytes) -> _TrustedPckChain:
        chain = _TRUSTED_CHAINS.get((self._root_der, certification_data))
        if chain is None:
            chain = self._verify_pck_chain(certification_data)
            _TRUSTED_CHAINS.put((self._root_der, certification_data), chain)
        return chain

    def _trusted_collateral(self, collateral: Collateral) -> _TrustedCollateral:
        trusted = _TRUSTED_COLLATERAL.get((self._root_der, collateral))
        if trusted is None:
            trusted = self._verify_collateral(collateral)
            _TRUSTED_COLLATERAL.put((self._root_der, collateral), trusted)
        return trusted

    def _verify_pck_chain(self, certification_data: bytes) -> _TrustedPckChain:
        chain = certs.load_chain(
            certification_data,
            "the quote's PCK certificate chain",
            length=3,
            code="PCK_CHAIN_MALFORMED",
        )
        pck, ca, root = chain
        certs.check_pinned_root(root, self._root_der, "the PCK certificate chain")
        certs.check_issued_by(ca, root, "the PCK CA certificate", code="PCK_CHAIN_INVALID")
        certs.check_issued_by(pck, ca, "the PCK certificate", code="PCK_CHAIN_INVALID")
        certs.check_pck_profile(pck, ca, root)
        try:
            raw = pck.extensions.get_extension_for_oid(_SGX_EXTENSION).value
            extension = content_cache.sgx_extension(raw.public_bytes())
        except (x509.ExtensionNotFound, PckExtensionError, *certs.CERTIFICATE_ERRORS):
            raise CertificateChainInvalidError(
                "the PCK certificate's SGX extension is missing or malformed",
                code="PCK_EXTENSION_INVALID",
            ) from None
        validity = (
            certs.certificate_validity(pck, "the PCK certificate"),
            certs.certificate_validity(ca, "the PCK CA certificate"),
            certs.certificate_validity(root, "the root CA certificate"),
        )
        start, end = _windows(validity)
        pck_key = certs.ec_public_key(pck, "the PCK certificate")
        return _TrustedPckChain(
            pck_key=pck_key,
            pck_key_sha256=certs.pck_key_sha256(pck_key),
            extension=extension,
            pck_serial=_serial(pck),
            ca_serial=_serial(ca),
            ca_key=certs.spki(ca),
            validity=validity,
            not_before=start,
            not_after=end,
        )

    def _verify_collateral(self, collateral: Collateral) -> _TrustedCollateral:
        root_crl = certs.load_crl(collateral.root_ca_crl, self._root, "the root CA CRL")
        pck_ca, crl_root = certs.load_chain(
            collateral.pck_crl_issuer_chain,
            "the PCK CRL issuer chain",
            length=2,
            code="PCK_CRL_CHAIN_INVALID",
        )
        certs.check_pinned_root(crl_root, self._root_der, "the PCK CRL issuer chain")
        certs.check_issued_by(pck_ca, crl_root, "the PCK CRL issuer", code="PCK_CRL_CHAIN_INVALID")
        certs.check_crl_issuer_profile(pck_ca, "the PCK CRL")
        pck_crl = certs.load_crl(collateral.pck_crl, pck_ca, "the PCK CRL")
        revoked_ca = certs.revoked_serials(root_crl, "the root CA CRL")

        validity = [
            certs.crl_validity(root_crl, "the root CA CRL"),
            certs.crl_validity(pck_crl, "the PCK CRL"),
            certs.certificate_validity(pck_ca, "the PCK CRL issuer certificate"),
        ]
        documents = []
        signers: dict[str, x509.Certificate] = {}  # a chain already checked in this call
        for what, chain_pem, text, signature, code in (
            (
                "TCB Info",
                collateral.tcb_info_issuer_chain,
                collateral.tcb_info,
                collateral.tcb_info_signature,
                "TCB_INFO_SIGNATURE_INVALID",
            ),
            (
                "QE Identity",
                collateral.qe_identity_issuer_chain,
                collateral.qe_identity,
                collateral.qe_identity_signature,
                "QE_IDENTITY_SIGNATURE_INVALID",
            ),
        ):
            signer = signers.get(chain_pem) or self._tcb_signer(chain_pem, what)
            signers[chain_pem] = signer  # TCB Info and QE Identity share one (same bytes)
            if _serial(signer) in revoked_ca:
                raise CertificateRevokedError(
                    f"the {what} signing certificate is revoked by the root CA CRL",
                    code="TCB_SIGNING_REVOKED",
                )
            certs.ec_public_key(signer, f"the {what} signing certificate")
            try:
                signed = text.encode()
            except UnicodeError:
                raise CollateralInvalidError(
                    f"the {what} text is not valid Unicode", code=code
                ) from None
            if not content_cache.raw_signed_by(signer, signature, signed):
                raise CollateralInvalidError(
                    f"the {what} signature does not verify: the collateral was altered or "
                    "signed by another authority",
                    code=code,
                )
            validity.append(certs.certificate_validity(signer, f"the {what} signing certificate"))
            documents.append(text)

        tcb_info = content_cache.tcb_info(documents[0])
        qe_identity = content_cache.qe_identity(documents[1])
        validity += [
            certs.Validity(
                "the TCB Info",
                False,
                tcb_info.issue_date.timestamp(),
                tcb_info.next_update.timestamp(),
            ),
            certs.Validity(
                "the QE Identity",
                False,
                qe_identity.issue_date.timestamp(),
                qe_identity.next_update.timestamp(),
            ),
        ]
        if _serial(pck_ca) in revoked_ca:
            raise CertificateRevokedError(
                "the PCK CRL issuer is revoked by the root CA CRL", code="PCK_CA_REVOKED"
            )
        frozen = tuple(validity)
        start, end = _windows(frozen)
        return _TrustedCollateral(
            tcb_info=tcb_info,
            qe_identity=qe_identity,
            revoked_pck_serials=certs.revoked_serials(pck_crl, "the PCK CRL"),
            revoked_ca_serials=revoked_ca,
            pck_crl_issuer_key=certs.spki(pck_ca),
            validity=frozen,
            not_before=start,
            not_after=end,
        )

    def _tcb_signer(self, chain_pem: str, what: str) -> x509.Certificate:
        signer, signer_root = certs.load_chain(
            chain_pem, f"the {what} issuer chain", length=2, code="TCB_SIGNING_CHAIN_INVALID"
        )
        certs.check_pinned_root(signer_root, self._root_der, f"the {what} issuer chain")
        certs.check_issued_by(
            signer,
            signer_root,
            f"the {what} signing certificate",
            code="TCB_SIGNING_CHAIN_INVALID",
        )
        return signer

    @staticmethod
    def _check_revocation(chain: _TrustedPckChain, trusted: _TrustedCollateral) -> None:
        if chain.ca_serial in trusted.revoked_ca_serials:
            raise CertificateRevokedError(
                "the platform's PCK CA certificate is revoked by the root CA CRL",
                code="PCK_CA_REVOKED",
            )
        if chain.ca_key != trusted.pck_crl_issuer_key:
            raise CollateralInvalidError(
                "the collateral's PCK CRL is issued by another CA than the platform's PCK "
                "certificate: fetch the PCK CRL of this platform's CA",
                code="PCK_CRL_ISSUER_MISMATCH",
            )
        if chain.pck_serial in trusted.revoked_pck_serials:
            raise CertificateRevokedError(
                "the platform's PCK certificate is revoked (listed on the PCK CRL): this "
                "platform can no longer attest",
                code="PCK_REVOKED",
            )


def _serial(certificate: x509.Certificate) -> int:
    try:
        return certificate.serial_number
    except certs.CERTIFICATE_ERRORS:
        raise CertificateChainInvalidError(
            f"{certs.subject_of(certificate)!r} has an unreadable serial number",
            code="CERTIFICATE_MALFORMED",
        ) from None


def verify_quote(
    quote: bytes,
    collateral: Collateral,
    *,
    root_ca_der: bytes,
    now: int | float | datetime | None = None,
) -> VerifiedQuote:
    """Verify one quote without caching anything."""
    return QuoteVerifier(root_ca_der, cache_size=0).verify(quote, collateral, now=now)


def read_quote(data: bytes) -> Quote:
    """``data`` parsed as a quote; ``QuoteMalformedError`` naming the defect otherwise."""
    try:
        return parse_quote(data)
    except QuoteFormatError as error:
        raise QuoteMalformedError(str(error), code=error.code) from None
