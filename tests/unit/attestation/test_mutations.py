"""Altered evidence is refused, each kind of alteration with its own error code."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from enclave_runtime.sgx import _pki
from enclave_runtime.sgx.authority import SimulatedAuthority
from enclave_runtime.sgx.platform import SimulatedPlatform
from enclave_runtime.sgx.quote import ISV_SIGNED_SIZE, ReportBody, parse_quote
from kubetee.attestation.collateral import Collateral
from kubetee.attestation.errors import (
    AttestationError,
    CertificateChainInvalidError,
    CertificateRevokedError,
    QeIdentityMismatchError,
    QuoteMalformedError,
    TcbNotSupportedError,
)
from kubetee.attestation.verifier import VerifiedQuote, verify_quote
from tests.unit.attestation.conftest import RealSample
from tests.unit.sgx.simulation import ISSUED, VERIFY_AT, SimulatedWorld

ATTESTATION_KEY_OFFSET = ISV_SIGNED_SIZE + 4 + 64
QE_REPORT_OFFSET = ATTESTATION_KEY_OFFSET + 64
MRENCLAVE_OFFSET = 48 + 64


@dataclass(frozen=True)
class Evidence:
    quote: bytes
    collateral: Collateral
    root: bytes
    other_root: bytes
    now: float
    window: tuple[float, float]

    def verify(self) -> VerifiedQuote:
        return verify_quote(self.quote, self.collateral, root_ca_der=self.root, now=self.now)


def _flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


def _swap_attestation_key(evidence: Evidence) -> Evidence:
    other = _pki.raw_public_key(_pki.generate_key().public_key())
    quote = evidence.quote
    return replace(
        evidence,
        quote=quote[:ATTESTATION_KEY_OFFSET] + other + quote[ATTESTATION_KEY_OFFSET + 64 :],
    )


def _tamper_json(field: str, old: str, new: str) -> Callable[[Evidence], Evidence]:
    def mutate(evidence: Evidence) -> Evidence:
        fields = evidence.collateral.to_dict()
        assert old in fields[field]
        fields[field] = fields[field].replace(old, new, 1)
        return replace(evidence, collateral=Collateral.from_dict(fields))

    return mutate


def _tamper_crl(evidence: Evidence) -> Evidence:
    crl = evidence.collateral.pck_crl
    return replace(
        evidence, collateral=replace(evidence.collateral, pck_crl=_flip(crl, len(crl) - 3))
    )


# Mutation name -> (mutation, expected code); the codes are all different.
MUTATIONS: dict[str, tuple[Callable[[Evidence], Evidence], str]] = {
    "changed_measurement": (
        lambda e: replace(e, quote=_flip(e.quote, MRENCLAVE_OFFSET)),
        "ISV_SIGNATURE_INVALID",
    ),
    "changed_qe_report": (
        lambda e: replace(e, quote=_flip(e.quote, QE_REPORT_OFFSET + 64)),
        "QE_REPORT_SIGNATURE_INVALID",
    ),
    "swapped_attestation_key": (_swap_attestation_key, "ATTESTATION_KEY_MISMATCH"),
    "wrong_root": (lambda e: replace(e, root=e.other_root), "ROOT_CA_MISMATCH"),
    "expired_collateral": (lambda e: replace(e, now=e.window[1] + 1), "COLLATERAL_EXPIRED"),
    "not_yet_valid_collateral": (
        lambda e: replace(e, now=e.window[0] - 1),
        "COLLATERAL_NOT_YET_VALID",
    ),
    "tampered_tcb_info": (
        _tamper_json("tcb_info", '"tcbStatus":"OutOfDate"', '"tcbStatus":"UpToDate"'),
        "TCB_INFO_SIGNATURE_INVALID",
    ),
    "tampered_qe_identity": (
        _tamper_json("qe_identity", '"isvprodid":1', '"isvprodid":2'),
        "QE_IDENTITY_SIGNATURE_INVALID",
    ),
    "tampered_pck_crl": (_tamper_crl, "CRL_SIGNATURE_INVALID"),
    "truncated_quote": (lambda e: replace(e, quote=e.quote[:-10]), "QUOTE_TRUNCATED"),
    "padded_quote": (lambda e: replace(e, quote=e.quote + bytes(16)), "QUOTE_TRAILING_DATA"),
}


@pytest.fixture(params=["real", "simulated"])
def evidence(
    request: pytest.FixtureRequest,
    real: RealSample,
    intel_root: bytes,
    world: SimulatedWorld,
) -> Evidence:
    if request.param == "real":
        return Evidence(
            real.quote,
            real.collateral,
            intel_root,
            world.authority.root_ca_der,
            real.now,
            (1750330571, 1752919278),
        )
    issued = ISSUED.timestamp()
    return Evidence(
        world.quote(),
        Collateral.from_dict(world.authority.collateral(now=ISSUED)),
        world.authority.root_ca_der,
        intel_root,
        VERIFY_AT.timestamp(),
        (issued, issued + 30 * 86400),
    )


def test_unaltered_evidence_verifies(evidence: Evidence) -> None:
    assert evidence.verify().mrenclave


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_mutation_is_refused_with_its_own_code(evidence: Evidence, name: str) -> None:
    mutate, code = MUTATIONS[name]
    with pytest.raises(AttestationError) as caught:
        mutate(evidence).verify()
    assert caught.value.code == code
    assert caught.value.message


def test_every_mutation_has_a_distinct_code() -> None:
    codes = [code for _, code in MUTATIONS.values()] + ["PCK_REVOKED"]
    assert len(set(codes)) == len(codes)


def test_wrong_root_is_an_untrusted_certificate(evidence: Evidence) -> None:
    with pytest.raises(CertificateChainInvalidError) as caught:
        replace(evidence, root=evidence.other_root).verify()
    assert caught.value.reason == "UntrustedCertificate"


@pytest.mark.parametrize("keep", [0, 100, 436, 1000, 2000])
def test_truncation_anywhere_is_a_malformed_quote(evidence: Evidence, keep: int) -> None:
    with pytest.raises(QuoteMalformedError) as caught:
        replace(evidence, quote=evidence.quote[:keep]).verify()
    assert caught.value.reason == "QuoteInvalid"


# Simulated-only refusals: the simulator can revoke and misconfigure what Intel signs.


@pytest.fixture(scope="module")
def own_authority() -> SimulatedAuthority:
    """An authority these tests may change without touching the shared world."""
    return SimulatedAuthority.generate(now=ISSUED)


def _verify(authority: SimulatedAuthority, quote: bytes) -> VerifiedQuote:
    return verify_quote(
        quote,
        Collateral.from_dict(authority.collateral(now=ISSUED)),
        root_ca_der=authority.root_ca_der,
        now=VERIFY_AT,
    )


def test_revoked_pck_is_refused(own_authority: SimulatedAuthority, world: SimulatedWorld) -> None:
    platform = own_authority.issue_platform(now=ISSUED)
    body = world_body(world)
    assert _verify(own_authority, platform.quote(body)).tcb_status == "UpToDate"
    own_authority.revoke(platform)
    with pytest.raises(CertificateRevokedError) as caught:
        _verify(own_authority, platform.quote(body))
    assert caught.value.code == "PCK_REVOKED"
    assert caught.value.reason == "CertificateRevoked"


def test_collateral_for_another_fmspc_is_refused(
    own_authority: SimulatedAuthority, world: SimulatedWorld
) -> None:
    platform = own_authority.issue_platform(now=ISSUED)
    original = own_authority.settings.fmspc
    own_authority.settings.fmspc = bytes.fromhex("00A067110000")
    try:
        with pytest.raises(AttestationError) as caught:
            _verify(own_authority, platform.quote(world_body(world)))
    finally:
        own_authority.settings.fmspc = original
    assert caught.value.code == "FMSPC_MISMATCH"


def test_revoked_tcb_level_is_refused(world: SimulatedWorld) -> None:
    collateral = Collateral.from_dict(world.authority.collateral(now=ISSUED))
    with pytest.raises(TcbNotSupportedError) as caught:
        verify_quote(
            world.quote("Revoked"),
            collateral,
            root_ca_der=world.authority.root_ca_der,
            now=VERIFY_AT,
        )
    assert caught.value.code == "TCB_REVOKED"
    assert caught.value.reason == "TCBRevoked"


def world_body(world: SimulatedWorld) -> ReportBody:
    return parse_quote(world.quote()).report_body


def _platform_with_qe(
    tmp_path: Path, platform: SimulatedPlatform, **qe: object
) -> SimulatedPlatform:
    """The same platform with another Quoting Enclave identity (edited on disk)."""
    platform.save(tmp_path)
    document = json.loads((tmp_path / "platform.json").read_text())
    document["quoting_enclave"].update(qe)
    (tmp_path / "platform.json").write_text(json.dumps(document))
    return SimulatedPlatform.load(tmp_path)


def test_quote_from_an_unknown_quoting_enclave_is_refused(
    tmp_path: Path, world: SimulatedWorld
) -> None:
    platform = _platform_with_qe(tmp_path, world.platforms["UpToDate"], mrsigner="ab" * 32)
    with pytest.raises(QeIdentityMismatchError) as caught:
        _verify(world.authority, platform.quote(world_body(world)))
    assert caught.value.code == "QE_IDENTITY_MISMATCH"


def test_out_of_date_quoting_enclave_makes_the_platform_out_of_date(
    tmp_path: Path, world: SimulatedWorld
) -> None:
    platform = _platform_with_qe(tmp_path, world.platforms["UpToDate"], isv_svn=6)
    verified = _verify(world.authority, platform.quote(world_body(world)))
    assert verified.tcb_status == "OutOfDate"
    assert verified.advisory_ids == ("INTEL-SA-00615",)


def test_quoting_enclave_below_every_level_is_revoked(
    tmp_path: Path, world: SimulatedWorld
) -> None:
    platform = _platform_with_qe(tmp_path, world.platforms["UpToDate"], isv_svn=5)
    with pytest.raises(TcbNotSupportedError) as caught:
        _verify(world.authority, platform.quote(world_body(world)))
    assert caught.value.code == "TCB_REVOKED"
