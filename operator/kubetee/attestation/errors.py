"""Why attestation evidence was refused.

Every refusal carries a stable ``code`` (UPPER_SNAKE, for programs and tests), a
CamelCase ``reason`` (usable as a Kubernetes Event or condition reason) and a
message a person can act on. Messages never carry report data or key material.

Hierarchy (Event reason in brackets)::

    AttestationError                    code, reason, message
    ├── QuoteVerificationError          evidence not genuine or not checkable
    │   ├── QuoteMalformedError         not a well-formed ECDSA v3 quote   [QuoteInvalid]
    │   ├── CollateralInvalidError      collateral unreadable, badly signed
    │   │                               or for another platform       [CollateralInvalid]
    │   ├── CollateralExpiredError      collateral or certificate outside
    │   │                               its validity                  [CollateralExpired]
    │   ├── CertificateChainInvalidError  a chain does not reach the
    │   │                               pinned root                [UntrustedCertificate]
    │   ├── CertificateRevokedError     a certificate is on a CRL    [CertificateRevoked]
    │   ├── QuoteSignatureInvalidError  QE report, key binding or ISV
    │   │                               signature fails                    [QuoteInvalid]
    │   ├── QeIdentityMismatchError     the quoting enclave is not the
    │   │                               one QE Identity names              [QuoteInvalid]
    │   ├── VerificationTimeInvalidError  the verification time is not a
    │   │                               real moment               [VerificationTimeInvalid]
    │   └── TcbNotSupportedError        platform TCB revoked or unknown      [TCBRevoked]
    └── PolicyError                     genuine evidence the policy refuses
        ├── DebugEnclaveError                                      [DebugEnclaveRejected]
        ├── MeasurementMismatchError                                [MeasurementMismatch]
        ├── SignerMismatchError                                          [SignerMismatch]
        ├── ProductIdMismatchError                                    [ProductIdMismatch]
        ├── IsvSvnTooLowError                                              [IsvSvnTooLow]
        ├── TcbStatusNotAcceptedError                              [TCBStatusNotAccepted]
        ├── AdvisoryNotAcceptedError                                [AdvisoryNotAccepted]
        └── SampleSignerError           the policy pins the public sample
                                        key outside the simulator   [SampleSignerRefused]
"""

from __future__ import annotations

from typing import ClassVar


class AttestationError(Exception):
    """Attestation evidence was refused; ``code``, ``reason`` and the message say why."""

    default_code: ClassVar[str] = "ATTESTATION_FAILED"
    reason: ClassVar[str] = "AttestationFailed"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code: str = code or self.default_code
        self.message: str = message

    def to_json(self) -> dict[str, object]:
        """The refusal as the CLI and services report it."""
        return {
            "verified": False,
            "error": self.code,
            "reason": self.reason,
            "message": self.message,
        }


class QuoteVerificationError(AttestationError):
    """The quote or its collateral failed a check of Intel's verification steps."""

    default_code = "QUOTE_INVALID"
    reason = "QuoteInvalid"


class QuoteMalformedError(QuoteVerificationError):
    """The bytes are not a well-formed SGX ECDSA quote version 3."""

    default_code = "QUOTE_MALFORMED"
    reason = "QuoteInvalid"


class CollateralInvalidError(QuoteVerificationError):
    """Collateral cannot be read, its signature fails, or it describes another platform."""

    default_code = "COLLATERAL_INVALID"
    reason = "CollateralInvalid"


class CollateralExpiredError(QuoteVerificationError):
    """Collateral or a certificate is expired or not yet valid at verification time."""

    default_code = "COLLATERAL_EXPIRED"
    reason = "CollateralExpired"


class CertificateChainInvalidError(QuoteVerificationError):
    """A certificate chain does not lead to the pinned root CA."""

    default_code = "CERTIFICATE_CHAIN_INVALID"
    reason = "UntrustedCertificate"


class CertificateRevokedError(QuoteVerificationError):
    """A certificate of the chain is listed on a certificate revocation list."""

    default_code = "CERTIFICATE_REVOKED"
    reason = "CertificateRevoked"


class QuoteSignatureInvalidError(QuoteVerificationError):
    """A signature or binding inside the quote does not verify."""

    default_code = "QUOTE_SIGNATURE_INVALID"
    reason = "QuoteInvalid"


class QeIdentityMismatchError(QuoteVerificationError):
    """The Quoting Enclave that signed the quote is not the one the QE Identity names."""

    default_code = "QE_IDENTITY_MISMATCH"
    reason = "QuoteInvalid"


class VerificationTimeInvalidError(QuoteVerificationError):
    """The time to verify at is not a finite moment between 1970 and 9999."""

    default_code = "VERIFICATION_TIME_INVALID"
    reason = "VerificationTimeInvalid"


class TcbNotSupportedError(QuoteVerificationError):
    """The platform's TCB level is revoked or matches no level of the TCB Info."""

    default_code = "TCB_REVOKED"
    reason = "TCBRevoked"


class PolicyError(AttestationError):
    """Genuine evidence that the workload's attestation policy does not accept."""

    default_code = "POLICY_REJECTED"
    reason = "PolicyRejected"


class DebugEnclaveError(PolicyError):
    default_code = "DEBUG_ENCLAVE_REJECTED"
    reason = "DebugEnclaveRejected"


class MeasurementMismatchError(PolicyError):
    default_code = "MEASUREMENT_MISMATCH"
    reason = "MeasurementMismatch"


class SignerMismatchError(PolicyError):
    default_code = "SIGNER_MISMATCH"
    reason = "SignerMismatch"


class ProductIdMismatchError(PolicyError):
    default_code = "PRODUCT_ID_MISMATCH"
    reason = "ProductIdMismatch"


class IsvSvnTooLowError(PolicyError):
    default_code = "ISV_SVN_TOO_LOW"
    reason = "IsvSvnTooLow"


class TcbStatusNotAcceptedError(PolicyError):
    default_code = "TCB_STATUS_NOT_ACCEPTED"
    reason = "TCBStatusNotAccepted"


class AdvisoryNotAcceptedError(PolicyError):
    default_code = "ADVISORY_NOT_ACCEPTED"
    reason = "AdvisoryNotAccepted"


class SampleSignerError(PolicyError):
    default_code = "SAMPLE_SIGNER_REFUSED"
    reason = "SampleSignerRefused"
