"""Why the attestation service refused a KBS request.

Quote and policy refusals come from :mod:`kubetee.attestation.errors`; this module
adds the refusals of the protocol around them. Each has a stable ``code``, a
CamelCase ``reason`` (the problem ``type`` suffix, the Event reason) and the HTTP
status the KBS protocol gives it. Messages never carry nonces, keys or secrets.

Hierarchy (HTTP status, reason)::

    AttestationError (kubetee.attestation.errors)         401 unless below
    ├── QuoteVerificationError, PolicyError ...           401  (their own reasons)
    └── KbsError
        ├── BadRequestError        malformed payload       400  BadRequest
        ├── SessionError           no usable session       401
        │   ├── SessionMissingError  no or forged cookie       SessionInvalid
        │   ├── NonceExpiredError    challenge too old         NonceExpired
        │   ├── NonceMismatchError   runtime nonce differs     NonceMismatch
        │   ├── NonceReplayedError   nonce already used        NonceReplayed
        │   ├── AttestationExpiredError  token too old         AttestationExpired
        │   └── PolicyChangedError   policy changed since      PolicyChanged
        ├── ReportDataMismatchError  quote binds other data 401  ReportDataMismatch
        ├── PlatformMismatchError  quote from another node's 401  PlatformMismatch
        │                          platform than the pod's
        ├── PlatformNotRegisteredError  pod's node has no     401  PlatformNotRegistered
        │                          registered platform
        ├── WorkloadUnknownError   no such attesting pod    401  WorkloadUnknown
        ├── ResourceForbiddenError not this workload's      403  ResourceForbidden
        ├── ResourceNotFoundError  no such resource         404  ResourceNotFound
        └── BackendUnavailableError  Kubernetes API failed  503  BackendUnavailable
            └── CollateralUnavailableError  no valid       503  CollateralUnavailable
                                       collateral from the PCCS
"""

from __future__ import annotations

from typing import ClassVar

from kubetee.attestation.errors import AttestationError


class KbsError(AttestationError):
    """A KBS protocol request was refused before or around evidence verification."""

    default_code = "KBS_REFUSED"
    reason = "Refused"
    http_status: ClassVar[int] = 401


class BadRequestError(KbsError):
    default_code = "BAD_REQUEST"
    reason = "BadRequest"
    http_status = 400


class SessionError(KbsError):
    default_code = "SESSION_INVALID"
    reason = "SessionInvalid"


class SessionMissingError(SessionError):
    default_code = "SESSION_INVALID"
    reason = "SessionInvalid"


class NonceExpiredError(SessionError):
    default_code = "NONCE_EXPIRED"
    reason = "NonceExpired"


class NonceMismatchError(SessionError):
    default_code = "NONCE_MISMATCH"
    reason = "NonceMismatch"


class NonceReplayedError(SessionError):
    default_code = "NONCE_REPLAYED"
    reason = "NonceReplayed"


class AttestationExpiredError(SessionError):
    default_code = "ATTESTATION_EXPIRED"
    reason = "AttestationExpired"


class PolicyChangedError(SessionError):
    default_code = "POLICY_CHANGED"
    reason = "PolicyChanged"


class ReportDataMismatchError(KbsError):
    default_code = "REPORT_DATA_MISMATCH"
    reason = "ReportDataMismatch"


class PlatformMismatchError(KbsError):
    default_code = "PLATFORM_MISMATCH"
    reason = "PlatformMismatch"


class PlatformNotRegisteredError(KbsError):
    default_code = "PLATFORM_NOT_REGISTERED"
    reason = "PlatformNotRegistered"


class WorkloadUnknownError(KbsError):
    default_code = "WORKLOAD_UNKNOWN"
    reason = "WorkloadUnknown"


class ResourceForbiddenError(KbsError):
    default_code = "RESOURCE_FORBIDDEN"
    reason = "ResourceForbidden"
    http_status = 403


class ResourceNotFoundError(KbsError):
    default_code = "RESOURCE_NOT_FOUND"
    reason = "ResourceNotFound"
    http_status = 404


class BackendUnavailableError(KbsError):
    default_code = "BACKEND_UNAVAILABLE"
    reason = "BackendUnavailable"
    http_status = 503


class CollateralUnavailableError(BackendUnavailableError):
    default_code = "COLLATERAL_UNAVAILABLE"
    reason = "CollateralUnavailable"


def http_status_of(error: AttestationError) -> int:
    """The HTTP status for a refusal: the KBS's own, else 401 (evidence not accepted)."""
    return error.http_status if isinstance(error, KbsError) else 401
