"""The nine-field collateral JSON: strict reading, lossless writing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kubetee.attestation.collateral import FIELDS, Collateral
from kubetee.attestation.errors import CollateralInvalidError
from tests.unit.attestation.conftest import RealSample


def test_real_collateral_round_trips(real: RealSample, tmp_path: Path) -> None:
    assert real.collateral.to_dict() == json.loads(real.collateral_json)
    path = tmp_path / "collateral.json"
    path.write_text(real.collateral.dumps())
    assert Collateral.load(path) == real.collateral


def test_pem_crls_are_accepted(real: RealSample) -> None:
    fields = real.collateral.to_dict()
    crl = x509.load_der_x509_crl(real.collateral.pck_crl)
    fields["pck_crl"] = crl.public_bytes(serialization.Encoding.PEM).decode()
    assert Collateral.from_dict(fields).pck_crl == real.collateral.pck_crl


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tcb_info_signature": "abcd"}, "64 bytes"),
        ({"qe_identity_signature": "not hex"}, "not hex"),
        ({"root_ca_crl": "xyz"}, "neither hex DER nor PEM"),
        ({"pck_crl": 5}, "must be a string"),
    ],
)
def test_malformed_fields_are_named(
    real: RealSample, change: dict[str, object], message: str
) -> None:
    fields: dict[str, object] = {**real.collateral.to_dict(), **change}
    with pytest.raises(CollateralInvalidError, match=message) as caught:
        Collateral.from_dict(fields)
    assert caught.value.code == "COLLATERAL_MALFORMED"


@pytest.mark.parametrize("missing", FIELDS)
def test_missing_field_is_named(real: RealSample, missing: str) -> None:
    fields = real.collateral.to_dict()
    del fields[missing]
    with pytest.raises(CollateralInvalidError, match=missing):
        Collateral.from_dict(fields)


@pytest.mark.parametrize("text", ["", "[]", "{", '"x"'])
def test_non_object_json_is_refused(text: str) -> None:
    with pytest.raises(CollateralInvalidError):
        Collateral.from_json(text)


def test_unreadable_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CollateralInvalidError, match="cannot read"):
        Collateral.load(tmp_path / "absent.json")
