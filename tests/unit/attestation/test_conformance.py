"""QVL conformance: each check Intel's Quote Verification Library makes, and its mutation.

Collateral is re-signed with the simulated authority's keys, so a refusal can only come
from the check under test, never from a broken signature.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from enclave_runtime.sgx import _pki
from enclave_runtime.sgx.authority import SimulatedAuthority
from enclave_runtime.sgx.enclave import make_report_body
from enclave_runtime.sgx.quote import parse_quote
from kubetee.attestation import certificates as certs
from kubetee.attestation.collateral import Collateral
from kubetee.attestation.errors import AttestationError, CertificateChainInvalidError
from kubetee.attestation.verifier import VerifiedQuote, verify_quote
from tests.unit.attestation.conftest import RealSample
from tests.unit.sgx.simulation import ISSUED, VERIFY_AT

QE_VENDOR_OFFSET = 12  # version, key type, reserved, QE SVN, PCE SVN: 2+2+4+2+2 bytes


@pytest.fixture(scope="module")
def authority() -> SimulatedAuthority:
    return SimulatedAuthority.generate(now=ISSUED)


def _quote(authority: SimulatedAuthority, status: str = "UpToDate") -> bytes:
    body = make_report_body(
        bytes(32), bytes(32), debug=False, isv_prod_id=1, isv_svn=1, report_data=bytes(64)
    )
    return authority.issue_platform(status, now=ISSUED).quote(body)


def _collateral(authority: SimulatedAuthority) -> dict[str, str]:
    return authority.collateral(now=ISSUED)


def _resign(authority: SimulatedAuthority, fields: dict[str, str], name: str, text: str) -> None:
    fields[name] = text
    fields[f"{name}_signature"] = _pki.sign_raw(authority._keys["tcb_signing"], text.encode()).hex()


def _verify(authority: SimulatedAuthority, quote: bytes, fields: dict[str, str]) -> VerifiedQuote:
    return verify_quote(
        quote, Collateral.from_dict(fields), root_ca_der=authority.root_ca_der, now=VERIFY_AT
    )


def _code(authority: SimulatedAuthority, quote: bytes, fields: dict[str, str]) -> str:
    with pytest.raises(AttestationError) as caught:
        _verify(authority, quote, fields)
    return caught.value.code


@pytest.mark.parametrize("sample", ["real", "simulated"])
def test_quote_from_another_vendors_quoting_enclave_is_refused(
    sample: str, real: RealSample, intel_root: bytes, authority: SimulatedAuthority
) -> None:
    if sample == "real":
        quote, collateral, root, now = real.quote, real.collateral, intel_root, real.now
    else:
        quote = _quote(authority)
        collateral = Collateral.from_dict(_collateral(authority))
        root, now = authority.root_ca_der, int(VERIFY_AT.timestamp())
    assert verify_quote(quote, collateral, root_ca_der=root, now=now).mrenclave is not None
    other = quote[:QE_VENDOR_OFFSET] + bytes(16) + quote[QE_VENDOR_OFFSET + 16 :]
    with pytest.raises(AttestationError) as caught:
        verify_quote(other, collateral, root_ca_der=root, now=now)
    assert caught.value.code == "QE_VENDOR_UNSUPPORTED"
    assert "939a7233f79c4ca9940a0db3957f0607" in caught.value.message


def test_tcb_info_of_another_tcb_type_is_refused(authority: SimulatedAuthority) -> None:
    fields = _collateral(authority)
    document = json.loads(fields["tcb_info"])
    assert document["tcbType"] == 0
    _resign(authority, fields, "tcb_info", json.dumps({**document, "tcbType": 1}))

    assert _code(authority, _quote(authority), fields) == "TCB_TYPE_UNSUPPORTED"


def test_tcb_levels_are_matched_in_qvl_order_whatever_the_document_order(
    authority: SimulatedAuthority,
) -> None:
    quote = _quote(authority, "OutOfDate")
    fields = _collateral(authority)
    expected = _verify(authority, quote, fields)
    document = json.loads(fields["tcb_info"])
    assert len(document["tcbLevels"]) > 2
    # Lowest level first: a verifier taking the first reachable level in document order
    # would report the oldest status; QVL sorts the levels before matching.
    _resign(
        authority,
        fields,
        "tcb_info",
        json.dumps({**document, "tcbLevels": list(reversed(document["tcbLevels"]))}),
    )

    reordered = _verify(authority, quote, fields)

    assert (reordered.tcb_status, reordered.advisory_ids) == (
        expected.tcb_status,
        expected.advisory_ids,
    )
    assert expected.tcb_status == "OutOfDate"


def test_tcb_evaluation_data_numbers_of_two_eras_report_the_older_as_qvl_does(
    authority: SimulatedAuthority,
) -> None:
    quote = _quote(authority)
    fields = _collateral(authority)
    era = json.loads(fields["tcb_info"])["tcbEvaluationDataNumber"]
    assert json.loads(fields["qe_identity"])["tcbEvaluationDataNumber"] == era
    assert _verify(authority, quote, fields).tcb_evaluation_data_number == era
    document = json.loads(fields["tcb_info"])
    _resign(
        authority, fields, "tcb_info", json.dumps({**document, "tcbEvaluationDataNumber": era + 3})
    )

    # QVL compares neither number; it reports the lower one (supplemental data), so a
    # policy can demand a minimum era.
    assert _verify(authority, quote, fields).tcb_evaluation_data_number == era


def test_real_samples_report_their_evaluation_era(real: RealSample, intel_root: bytes) -> None:
    result = verify_quote(real.quote, real.collateral, root_ca_der=intel_root, now=real.now)
    assert result.tcb_evaluation_data_number == 17


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _elements(der: bytes) -> list[bytes]:
    """The encoded elements inside one DER SEQUENCE."""
    offset = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    items = []
    while offset < len(der):
        first = der[offset + 1]
        if first < 0x80:
            header, size = 2, first
        else:
            count = first & 0x7F
            header = 2 + count
            size = int.from_bytes(der[offset + 2 : offset + 2 + count], "big")
        items.append(der[offset : offset + header + size])
        offset += header + size
    return items


def _crl_without_next_update(crl_der: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The same CRL, re-signed, with its optional nextUpdate left out (as RFC 5280 allows)."""
    crl = x509.load_der_x509_crl(crl_der)
    tbs = _elements(crl.tbs_certlist_bytes)
    # version, signature algorithm, issuer, thisUpdate, nextUpdate, ...
    assert tbs[4][0] in (0x17, 0x18)  # UTCTime / GeneralizedTime
    new_tbs = _der(0x30, b"".join(tbs[:4] + tbs[5:]))
    signature = key.sign(new_tbs, ec.ECDSA(hashes.SHA256()))
    algorithm = _elements(crl_der)[1]
    return _der(0x30, new_tbs + algorithm + _der(0x03, b"\0" + signature))


def test_crl_without_next_update_is_refused(authority: SimulatedAuthority) -> None:
    fields = _collateral(authority)
    endless = _crl_without_next_update(
        bytes.fromhex(fields["root_ca_crl"]), authority._keys["root_ca"]
    )
    assert x509.load_der_x509_crl(endless).next_update_utc is None
    fields["root_ca_crl"] = endless.hex()

    assert _code(authority, _quote(authority), fields) == "CRL_NEXT_UPDATE_MISSING"


def _chain(**leaf: object) -> tuple[x509.Certificate, x509.Certificate, x509.Certificate]:
    """Root, PCK CA and a leaf with Intel's profile unless ``leaf`` or ``ca_path`` says else."""
    start = ISSUED - timedelta(days=1)
    end = ISSUED + timedelta(days=30)
    root_key, ca_key, leaf_key = (_pki.generate_key() for _ in range(3))
    root = _pki.issue_certificate(
        subject=_pki.name("Test SGX Root CA"),
        public_key=root_key.public_key(),
        issuer=None,
        issuer_key=root_key,
        not_before=start,
        not_after=end,
        is_ca=True,
        ca_path_length=1,
    )
    ca = _pki.issue_certificate(
        subject=_pki.name("Test SGX PCK Processor CA"),
        public_key=ca_key.public_key(),
        issuer=root,
        issuer_key=root_key,
        not_before=start,
        not_after=end,
        is_ca=True,
        ca_path_length=int(leaf.pop("ca_path", 0)),  # type: ignore[call-overload]
    )
    pck = _pki.issue_certificate(
        subject=_pki.name(str(leaf.pop("cn", "Test SGX PCK Certificate"))),
        public_key=leaf_key.public_key(),
        issuer=ca,
        issuer_key=ca_key,
        not_before=start,
        not_after=end,
        is_ca=bool(leaf.pop("is_ca", False)),
        ca_path_length=0,
    )
    return pck, ca, root


def test_pck_chain_with_intels_profile_passes() -> None:
    certs.check_pck_profile(*_chain())


@pytest.mark.parametrize(
    "leaf",
    [{"cn": "Test SGX Platform Certificate"}, {"is_ca": True}, {"ca_path": 1}],
    ids=["cn-without-pck-phrase", "leaf-is-a-ca", "pck-ca-path-length-1"],
)
def test_pck_chain_outside_the_profile_is_refused(leaf: dict[str, object]) -> None:
    with pytest.raises(CertificateChainInvalidError) as caught:
        certs.check_pck_profile(*_chain(**leaf))
    assert caught.value.code == "PCK_PROFILE_INVALID"


def test_real_pck_chain_has_intels_profile(real: RealSample) -> None:
    chain = certs.load_chain(
        parse_quote(real.quote).certification_data, "chain", length=3, code="X"
    )
    certs.check_pck_profile(*chain)
    assert "SGX PCK Certificate" in certs.common_name(chain[0].subject)
