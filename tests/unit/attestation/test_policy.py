"""The attestation policy: its CRD-facing model and each refusal it makes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pydantic
import pytest

from enclave_runtime.enclave.keys import sample_mrsigner
from kubetee.attestation.errors import PolicyError, SampleSignerError
from kubetee.attestation.policy import AttestationPolicy, apply_policy, refuse_sample_signer
from kubetee.attestation.verified import VerifiedQuote

MRENCLAVE = bytes.fromhex("11" * 32)
MRSIGNER = bytes.fromhex("22" * 32)
VERIFIED = VerifiedQuote(
    tcb_status="SWHardeningNeeded",
    advisory_ids=("INTEL-SA-00615",),
    mrenclave=MRENCLAVE,
    mrsigner=MRSIGNER,
    isv_prod_id=7,
    isv_svn=3,
    debug=False,
    report_data=bytes(64),
    fmspc=bytes(6),
    valid_until=datetime(2030, 1, 1, tzinfo=UTC),
)


def test_default_policy_accepts_a_current_production_enclave() -> None:
    apply_policy(VERIFIED, AttestationPolicy())


def test_matching_policy_accepts() -> None:
    policy = AttestationPolicy.model_validate(
        {
            "mrenclave": ["11" * 32, "33" * 32],
            "mrsigner": ["22" * 32],
            "isvProdId": 7,
            "minIsvSvn": 3,
            "acceptedAdvisories": ["INTEL-SA-00615"],
        }
    )
    apply_policy(VERIFIED, policy)


@pytest.mark.parametrize(
    ("policy", "verified", "code", "reason"),
    [
        ({}, {"debug": True}, "DEBUG_ENCLAVE_REJECTED", "DebugEnclaveRejected"),
        ({"mrenclave": ["33" * 32]}, {}, "MEASUREMENT_MISMATCH", "MeasurementMismatch"),
        ({"mrsigner": ["33" * 32]}, {}, "SIGNER_MISMATCH", "SignerMismatch"),
        ({"isvProdId": 8}, {}, "PRODUCT_ID_MISMATCH", "ProductIdMismatch"),
        ({"minIsvSvn": 4}, {}, "ISV_SVN_TOO_LOW", "IsvSvnTooLow"),
        ({}, {"tcb_status": "OutOfDate"}, "TCB_STATUS_NOT_ACCEPTED", "TCBStatusNotAccepted"),
        ({"acceptedAdvisories": []}, {}, "ADVISORY_NOT_ACCEPTED", "AdvisoryNotAccepted"),
    ],
)
def test_each_refusal_has_its_code_and_reason(
    policy: dict[str, object], verified: dict[str, object], code: str, reason: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        apply_policy(replace(VERIFIED, **verified), AttestationPolicy.model_validate(policy))  # type: ignore[arg-type]
    assert (caught.value.code, caught.value.reason) == (code, reason)
    assert caught.value.message


def test_allow_debug_and_wider_statuses_accept() -> None:
    policy = AttestationPolicy(allow_debug=True, accepted_tcb_statuses=["OutOfDate"])
    apply_policy(replace(VERIFIED, debug=True, tcb_status="OutOfDate"), policy)


def test_uppercase_measurements_are_normalized() -> None:
    policy = AttestationPolicy.model_validate({"mrenclave": ["AB" * 32]})
    assert policy.mrenclave == ["ab" * 32]


@pytest.mark.parametrize(
    "document",
    [
        {"mrenclave": ["11" * 31]},
        {"mrsigner": ["zz" * 32]},
        {"minIsvSvn": -1},
        {"isvProdId": 70000},
        {"acceptedTcbStatuses": ["Revoked"]},
        {"acceptedTcbStatuses": []},
        {"allowDebg": True},
    ],
)
def test_invalid_policies_are_refused(document: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        AttestationPolicy.model_validate(document)


def test_model_speaks_camel_case_and_documents_every_field() -> None:
    dumped = AttestationPolicy(min_isv_svn=2).model_dump()
    assert dumped["minIsvSvn"] == 2
    assert dumped["acceptedTcbStatuses"] == ["UpToDate", "SWHardeningNeeded"]
    schema = AttestationPolicy.model_json_schema()
    assert set(schema["properties"]) == {
        "mrenclave",
        "mrsigner",
        "isvProdId",
        "minIsvSvn",
        "allowDebug",
        "acceptedTcbStatuses",
        "acceptedAdvisories",
        "tcbRecoveryGraceSeconds",
    }
    assert all(field.get("description") for field in schema["properties"].values())


def test_a_policy_pinning_the_sample_key_is_refused_outside_the_simulator() -> None:
    pinned = AttestationPolicy(mrsigner=[sample_mrsigner().hex()])
    with pytest.raises(SampleSignerError, match="public sample signing key") as refusal:
        refuse_sample_signer(pinned)
    assert refusal.value.reason == "SampleSignerRefused"
    refuse_sample_signer(AttestationPolicy(mrsigner=["ab" * 32]))  # an author's key
    refuse_sample_signer(AttestationPolicy())
