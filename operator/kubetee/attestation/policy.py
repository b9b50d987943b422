"""The attestation policy of an EnclaveContainer and its application to a verified quote.

``AttestationPolicy`` is embedded in the EnclaveContainer CRD as ``spec.attestation.policy``;
its field descriptions become ``kubectl explain`` text.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints

from enclave_runtime.enclave.keys import sample_mrsigner
from kubetee.api.base import ApiModel
from kubetee.attestation.errors import (
    AdvisoryNotAcceptedError,
    DebugEnclaveError,
    IsvSvnTooLowError,
    MeasurementMismatchError,
    ProductIdMismatchError,
    SampleSignerError,
    SignerMismatchError,
    TcbStatusNotAcceptedError,
)
from kubetee.attestation.verified import AcceptableTcbStatus, VerifiedQuote

Sha256Hex = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-fA-F]{64}$", to_lower=True),
]
AdvisoryId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


def _default_accepted_tcb_statuses() -> list[AcceptableTcbStatus]:
    return ["UpToDate", "SWHardeningNeeded"]


def _no_default(schema: dict[str, Any]) -> None:
    """Leave an unset pin unset in stored objects: a defaulted ``[]`` reads in
    ``kubectl describe`` as a blank value, as if something were pinned."""
    schema.pop("default", None)


# What a policy must pin, in the words of the EnclaveContainer's validation.
PIN_REQUIRED_MESSAGE = (
    "attestation.policy pins no enclave identity: set attestation.policy.mrenclave or "
    "attestation.policy.mrsigner (or both), 64 hex digits each; without a pin any "
    "enclave would receive the secrets"
)


class AttestationPolicy(ApiModel):
    """Which enclaves, on which platforms, may receive the workload's secrets."""

    mrenclave: list[Sha256Hex] = Field(
        default_factory=list,
        max_length=64,
        description="Accepted enclave measurements (MRENCLAVE), 64 hex digits each. "
        "An EnclaveContainer pins at least one of mrenclave and mrsigner; unset accepts "
        "any measurement from a pinned signer.",
        json_schema_extra=_no_default,
    )
    mrsigner: list[Sha256Hex] = Field(
        default_factory=list,
        max_length=64,
        description="Accepted enclave signers (MRSIGNER: SHA-256 of the signer's RSA "
        "modulus), 64 hex digits each. An EnclaveContainer pins at least one of mrenclave "
        "and mrsigner; unset accepts any signer of a pinned measurement.",
        json_schema_extra=_no_default,
    )
    isv_prod_id: int | None = Field(
        default=None,
        ge=0,
        le=0xFFFF,
        description="Required ISV product id of the enclave. Unset accepts any product.",
    )
    min_isv_svn: int | None = Field(
        default=None,
        ge=0,
        le=0xFFFF,
        description="Lowest accepted ISV security version number of the enclave.",
    )
    allow_debug: bool = Field(
        default=False,
        description="Accept enclaves launched in DEBUG mode, whose memory the host can "
        "read. Never enable this for real secrets.",
    )
    accepted_tcb_statuses: list[AcceptableTcbStatus] = Field(
        default_factory=_default_accepted_tcb_statuses,
        min_length=1,
        description="Platform TCB statuses accepted after verification, as Intel's TCB "
        "Info names them. A Revoked platform is never accepted.",
    )
    accepted_advisories: list[AdvisoryId] | None = Field(
        default=None,
        description="Security advisories (e.g. INTEL-SA-00615) the platform may be "
        "affected by. Unset accepts any advisory; a list requires every advisory of the "
        "platform to be in it.",
    )

    tcb_recovery_grace_seconds: int = Field(
        default=3600,
        ge=0,
        le=30 * 86400,
        description="When a newer TCB evaluation makes a replica's platform one this "
        "policy no longer accepts: seconds the replica keeps attesting while it is moved "
        "to an accepted node (condition TcbRecoveryPending); after that its secrets are "
        "withdrawn. 0 withdraws them at once. Not part of the policy's identity: "
        "changing it asks no replica to attest again.",
    )

    @property
    def pins_identity(self) -> bool:
        """Whether the policy names the enclave (MRENCLAVE or MRSIGNER) it accepts."""
        return bool(self.mrenclave or self.mrsigner)


def apply_policy(verified: VerifiedQuote, policy: AttestationPolicy) -> None:
    """Raise a ``PolicyError`` subclass unless ``policy`` accepts the verified enclave."""
    if verified.debug and not policy.allow_debug:
        raise DebugEnclaveError(
            "the enclave runs in DEBUG mode, so the host can read its memory; "
            "set attestation.policy.allowDebug to accept it (never for real secrets)"
        )
    mrenclave = verified.mrenclave.hex()
    if policy.mrenclave and mrenclave not in policy.mrenclave:
        raise MeasurementMismatchError(
            f"enclave measurement {mrenclave} is not among the "
            f"{len(policy.mrenclave)} accepted in attestation.policy.mrenclave"
        )
    mrsigner = verified.mrsigner.hex()
    if policy.mrsigner and mrsigner not in policy.mrsigner:
        raise SignerMismatchError(
            f"enclave signer {mrsigner} is not among the "
            f"{len(policy.mrsigner)} accepted in attestation.policy.mrsigner"
        )
    if policy.isv_prod_id is not None and verified.isv_prod_id != policy.isv_prod_id:
        raise ProductIdMismatchError(
            f"enclave product id {verified.isv_prod_id} differs from "
            f"attestation.policy.isvProdId {policy.isv_prod_id}"
        )
    if policy.min_isv_svn is not None and verified.isv_svn < policy.min_isv_svn:
        raise IsvSvnTooLowError(
            f"enclave security version {verified.isv_svn} is below "
            f"attestation.policy.minIsvSvn {policy.min_isv_svn}; deploy an updated enclave"
        )
    if verified.tcb_status not in policy.accepted_tcb_statuses:
        raise TcbStatusNotAcceptedError(
            f"platform TCB status {verified.tcb_status} is not in "
            f"attestation.policy.acceptedTcbStatuses {policy.accepted_tcb_statuses}; "
            "update the platform's microcode/software or widen the policy"
        )
    if policy.accepted_advisories is not None:
        unaccepted = [a for a in verified.advisory_ids if a not in policy.accepted_advisories]
        if unaccepted:
            raise AdvisoryNotAcceptedError(
                f"platform is affected by advisories {unaccepted} not listed in "
                "attestation.policy.acceptedAdvisories"
            )


def refuse_sample_signer(policy: AttestationPolicy) -> None:
    """Outside the simulator, refuse a policy that pins the public sample key's MRSIGNER.

    Anyone can sign an enclave with the sample key (it ships with KubeTEE, like the SGX
    SDK's), so pinning its MRSIGNER pins nothing on real platforms.
    """
    if sample_mrsigner().hex() in policy.mrsigner:
        raise SampleSignerError(
            "attestation.policy.mrsigner pins KubeTEE's public sample signing key, which "
            "anyone can sign enclaves with; it is accepted only by the simulator. Sign the "
            "enclave with your own key (`kubetee enclave keygen`, `kubetee enclave build "
            "--key`) and pin the MRSIGNER `kubetee enclave measure` prints"
        )
