"""Why the attestation service refused a KBS request.

Quote and policy refusals come from :mod:`kubetee.attestation.errors`; this module
adds the refusals of the protocol around them. Each has a stable ``code``, a
CamelCase ``reason`` (the problem's ``reason`` member, the Event reason), the KBS
protocol's problem type (the suffix of the problem ``type``, as Trustee's KBS names
them) and an HTTP status. Messages never carry nonces, keys or secrets.

Hierarchy (HTTP status, KBS problem type, reason)::

    AttestationError (kubetee.attestation.errors)  401 AttestationError (own reasons)
    └── KbsError
        ├── BadRequestError         malformed payload      400 SerdeError      BadRequest
        ├── SessionError            no usable session      401 TokenNotFound
        │   ├── SessionMissingError   no or forged cookie                      SessionInvalid
        │   ├── NonceExpiredError     challenge too old      AttestationError  NonceExpired
        │   ├── NonceMismatchError    runtime nonce differs  AttestationError  NonceMismatch
        │   ├── NonceReplayedError    nonce already used     AttestationError  NonceReplayed
        │   │   └── NonceOfAnotherReplicaError  issued by another replica  (same)
        │   ├── AttestationExpiredError  token too old     TokenVerifierError  AttestationExpired
        │   └── PolicyChangedError    policy changed since TokenVerifierError  PolicyChanged
        ├── ReportDataMismatchError  quote binds other data  401 AttestationError
        ├── PodNotNamedError         no init-data names a pod 401 AttestationError
        ├── InitDataMismatchError    CONFIGID is another's   401 AttestationError
        ├── PlatformMismatchError    another node's platform 401 AttestationError
        ├── PlatformNotRegisteredError  no platform for node 401 AttestationError
        ├── WorkloadUnknownError     no such attesting pod   401 AttestationError
        ├── ResourceForbiddenError   not this workload's     403 PolicyDeny
        ├── ResourceNotFoundError    no such resource        404 InvalidRequestPath
        └── BackendUnavailableError  Kubernetes API failed   503 PluginInternalError
            └── CollateralUnavailableError  no valid collateral from the PCCS
"""

from __future__ import annotations

from typing import ClassVar

from kubetee.attestation.errors import AttestationError

KBS_PROBLEM_PREFIX = "https://github.com/confidential-containers/kbs/errors/"
"""The protocol's problem ``type`` namespace (an identifier, not a resolvable URL)."""


class KbsError(AttestationError):
    """A KBS protocol request was refused before or around evidence verification."""

    default_code = "KBS_REFUSED"
    reason = "Refused"
    http_status: ClassVar[int] = 401
    kbs_problem: ClassVar[str] = "AttestationError"


class BadRequestError(KbsError):
    default_code = "BAD_REQUEST"
    reason = "BadRequest"
    http_status = 400
    kbs_problem = "SerdeError"


class SessionError(KbsError):
    default_code = "SESSION_INVALID"
    reason = "SessionInvalid"
    kbs_problem = "TokenNotFound"


class SessionMissingError(SessionError):
    default_code = "SESSION_INVALID"
    reason = "SessionInvalid"


class NonceExpiredError(SessionError):
    default_code = "NONCE_EXPIRED"
    reason = "NonceExpired"
    kbs_problem = "AttestationError"


class NonceMismatchError(SessionError):
    default_code = "NONCE_MISMATCH"
    reason = "NonceMismatch"
    kbs_problem = "AttestationError"


class NonceReplayedError(SessionError):
    default_code = "NONCE_REPLAYED"
    reason = "NonceReplayed"
    kbs_problem = "AttestationError"


class NonceOfAnotherReplicaError(NonceReplayedError):
    """A nonce bound to another replica: it may have been used there, so it is refused
    here as a possible replay (same reason), with its own code."""

    default_code = "NONCE_OF_ANOTHER_REPLICA"


class AttestationExpiredError(SessionError):
    default_code = "ATTESTATION_EXPIRED"
    reason = "AttestationExpired"
    kbs_problem = "TokenVerifierError"


class PolicyChangedError(SessionError):
    default_code = "POLICY_CHANGED"
    reason = "PolicyChanged"
    kbs_problem = "TokenVerifierError"


class ReportDataMismatchError(KbsError):
    default_code = "REPORT_DATA_MISMATCH"
    reason = "ReportDataMismatch"


class PodNotNamedError(KbsError):
    """The signed evidence names no pod: there is nothing it could attest."""

    default_code = "POD_NOT_NAMED"
    reason = "PodNotNamed"


class InitDataMismatchError(KbsError):
    """The quote's CONFIGID is not the digest of the init-data sent with it."""

    default_code = "INIT_DATA_MISMATCH"
    reason = "InitDataMismatch"


class PlatformMismatchError(KbsError):
    """The quote comes from another platform than the one registered for the pod's node."""

    default_code = "PLATFORM_MISMATCH"
    reason = "PlatformMismatch"


class PlatformNotRegisteredError(KbsError):
    """No platform is registered for the node the pod runs on."""

    default_code = "PLATFORM_NOT_REGISTERED"
    reason = "PlatformNotRegistered"


class WorkloadUnknownError(KbsError):
    default_code = "WORKLOAD_UNKNOWN"
    reason = "WorkloadUnknown"


class ResourceForbiddenError(KbsError):
    default_code = "RESOURCE_FORBIDDEN"
    reason = "ResourceForbidden"
    http_status = 403
    kbs_problem = "PolicyDeny"


class ResourceNotFoundError(KbsError):
    default_code = "RESOURCE_NOT_FOUND"
    reason = "ResourceNotFound"
    http_status = 404
    kbs_problem = "InvalidRequestPath"


class BackendUnavailableError(KbsError):
    default_code = "BACKEND_UNAVAILABLE"
    reason = "BackendUnavailable"
    http_status = 503
    kbs_problem = "PluginInternalError"


class CollateralUnavailableError(BackendUnavailableError):
    default_code = "COLLATERAL_UNAVAILABLE"
    reason = "CollateralUnavailable"


def http_status_of(error: AttestationError) -> int:
    """The HTTP status for a refusal: the KBS's own, else 401 (evidence not accepted)."""
    return error.http_status if isinstance(error, KbsError) else 401


def kbs_problem_of(error: AttestationError) -> str:
    """The protocol's problem type: the KBS's own, else ``AttestationError``."""
    return error.kbs_problem if isinstance(error, KbsError) else "AttestationError"
