"""Whether the attestation service can be reached: what the operator last observed.

Replicas attest only through the service. When it cannot be reached no replica can
attest or re-attest, which is not the replicas' fault: the status says so (reason
``AttestationUnavailable``, naming the service) and no replica is replaced for it.
"""

from __future__ import annotations

from dataclasses import dataclass

ATTESTATION_UNAVAILABLE = "AttestationUnavailable"


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    """The attestation service as last probed; ``message`` names it and the failure."""

    reachable: bool
    message: str = ""


REACHABLE = ServiceHealth(reachable=True)


def not_configured() -> ServiceHealth:
    return ServiceHealth(
        reachable=False,
        message="the operator has no attestation service (KUBETEE_ATTESTATION_URL is "
        "unset): no replica can attest; run the operator with --attestation-url",
    )


def unreachable(url: str, error: str, since: str) -> ServiceHealth:
    return ServiceHealth(
        reachable=False,
        message=f"attestation service {url} cannot attest since {since} ({error}): "
        "replicas can neither attest nor re-attest, and none is replaced until it answers",
    )
