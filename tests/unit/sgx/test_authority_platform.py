"""The simulated provisioning authority and platforms: PKI shape, persistence, quoting."""

from __future__ import annotations

import hashlib
import json
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from enclave_runtime.sgx.authority import DEFAULT_TCB_LEVELS, SimulatedAuthority, TcbLevel
from enclave_runtime.sgx.pck_extension import SGX_EXTENSION_OID, SgxExtension
from enclave_runtime.sgx.platform import QE_AUTH_DATA, SimulatedPlatform
from enclave_runtime.sgx.quote import ReportBody, parse_quote
from kubetee.attestation.collateral import Collateral
from kubetee.attestation.verifier import verify_quote
from tests.unit.sgx.simulation import ISSUED, VERIFY_AT, simulated_world


def _extension(certificate: x509.Certificate) -> SgxExtension:
    raw = certificate.extensions.get_extension_for_oid(
        x509.ObjectIdentifier(SGX_EXTENSION_OID)
    ).value
    assert isinstance(raw, x509.UnrecognizedExtension)
    return SgxExtension.from_der(raw.value)


def test_pki_is_shaped_like_intels() -> None:
    authority = simulated_world().authority
    root, pck_ca, signing = (
        authority.certificates[name] for name in ("root_ca", "pck_ca", "tcb_signing")
    )
    assert root.issuer == root.subject
    pck_ca.verify_directly_issued_by(root)
    signing.verify_directly_issued_by(root)
    assert pck_ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not signing.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for certificate in (root, pck_ca, signing):
        key = certificate.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert key.curve.name == "secp256r1"


@pytest.mark.parametrize("level", DEFAULT_TCB_LEVELS, ids=lambda level: level.status)
def test_pck_certificate_states_the_configured_tcb(level: TcbLevel) -> None:
    world = simulated_world()
    platform = world.platforms[level.status]
    platform.pck_certificate.verify_directly_issued_by(world.authority.certificates["pck_ca"])
    extension = _extension(platform.pck_certificate)
    assert extension.tcb_components == level.components
    assert extension.pcesvn == level.pcesvn
    assert extension.fmspc == world.authority.settings.fmspc
    assert extension.ppid == platform.identity.ppid
    raw = platform.pck_certificate.extensions.get_extension_for_oid(
        x509.ObjectIdentifier(SGX_EXTENSION_OID)
    ).value
    assert isinstance(raw, x509.UnrecognizedExtension)
    assert extension.to_der() == raw.value


def test_platforms_differ_by_pck_but_share_the_root() -> None:
    world = simulated_world()
    first = world.authority.issue_platform("UpToDate", now=ISSUED)
    second = world.authority.issue_platform("UpToDate", now=ISSUED)
    assert first.identity.ppid != second.identity.ppid
    assert first.pck_certificate.serial_number != second.pck_certificate.serial_number
    assert first.pck_chain[2] == second.pck_chain[2] == world.authority.certificates["root_ca"]


def test_qe_report_binds_the_attestation_key() -> None:
    quote = parse_quote(simulated_world().quote())
    expected = hashlib.sha256(quote.attestation_key + quote.qe_auth_data).digest()
    assert quote.qe_auth_data == QE_AUTH_DATA
    assert quote.qe_report.report_data == expected + bytes(32)


def test_quote_takes_the_platform_cpusvn() -> None:
    world = simulated_world()
    quote = parse_quote(world.quote("OutOfDate"))
    assert quote.report_body.cpu_svn == world.platforms["OutOfDate"].identity.cpusvn
    assert quote.header.pce_svn == world.platforms["OutOfDate"].identity.pcesvn


def test_quote_is_its_fields_serialized_one_by_one_and_signed() -> None:
    """The quote, made from the parts serialized once per platform, is byte for byte the
    quote assembled field by field, whatever the body's CPUSVN, and its signature covers
    header and body under the attestation key."""
    world = simulated_world()
    platform = world.platforms["SWHardeningNeeded"]
    body = ReportBody(
        cpu_svn=b"\xff" * 16,  # EREPORT's CPUSVN replaces whatever the body said
        mrenclave=world.mrenclave,
        isv_prod_id=7,
        isv_svn=3,
        config_id=b"\x05" * 64,
        report_data=b"\x09" * 64,
    )
    raw = platform.quote(body)
    quote = parse_quote(raw)
    assert raw == platform.assemble(body, quote.signature)
    assert quote.report_body == replace(body, cpu_svn=platform.identity.cpusvn)
    public = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), b"\x04" + quote.attestation_key
    )
    r, s = quote.signature[:32], quote.signature[32:]
    signature = encode_dss_signature(int.from_bytes(r), int.from_bytes(s))
    public.verify(signature, quote.signed_data(), ec.ECDSA(hashes.SHA256()))


def test_authority_and_platform_survive_save_and_load(tmp_path: Path) -> None:
    world = simulated_world()
    world.authority.save(tmp_path / "authority")
    world.platforms["SWHardeningNeeded"].save(tmp_path / "platform")
    for key_file in [
        *(tmp_path / "authority").glob("*.key.pem"),
        *(tmp_path / "platform").glob("*.key.pem"),
    ]:
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    authority = SimulatedAuthority.load(tmp_path / "authority")
    platform = SimulatedPlatform.load(tmp_path / "platform")
    assert authority.root_ca_der == world.authority.root_ca_der
    assert (tmp_path / "authority" / "root_ca.der").read_bytes() == authority.root_ca_der
    assert platform.pck_certificate == world.platforms["SWHardeningNeeded"].pck_certificate

    body = parse_quote(world.quote()).report_body
    collateral = Collateral.from_dict(authority.collateral(now=ISSUED))
    verified = verify_quote(
        platform.quote(body), collateral, root_ca_der=authority.root_ca_der, now=VERIFY_AT
    )
    assert verified.tcb_status == "SWHardeningNeeded"


def test_collateral_has_the_nine_fields_in_their_forms() -> None:
    collateral = simulated_world().authority.collateral(now=ISSUED)
    assert sorted(collateral) == sorted(
        [
            "pck_crl_issuer_chain",
            "root_ca_crl",
            "pck_crl",
            "tcb_info_issuer_chain",
            "tcb_info",
            "tcb_info_signature",
            "qe_identity_issuer_chain",
            "qe_identity",
            "qe_identity_signature",
        ]
    )
    tcb_info = json.loads(collateral["tcb_info"])
    assert (tcb_info["id"], tcb_info["version"]) == ("SGX", 3)
    assert tcb_info["issueDate"] == "2026-03-01T12:00:00Z"
    assert [level["tcbStatus"] for level in tcb_info["tcbLevels"]] == [
        "UpToDate",
        "SWHardeningNeeded",
        "OutOfDate",
        "Revoked",
    ]
    qe_identity = json.loads(collateral["qe_identity"])
    assert (qe_identity["id"], qe_identity["version"]) == ("QE", 2)
    x509.load_der_x509_crl(bytes.fromhex(collateral["pck_crl"]))
    assert len(bytes.fromhex(collateral["tcb_info_signature"])) == 64


def test_unknown_tcb_status_is_refused() -> None:
    with pytest.raises(ValueError, match="no TCB level has status 'ConfigurationNeeded'"):
        simulated_world().authority.issue_platform("ConfigurationNeeded")
