"""Simulated quotes verify with the simulator's root, with the TCB status configured."""

from __future__ import annotations

import pytest

from kubetee.attestation.collateral import Collateral
from kubetee.attestation.errors import CertificateChainInvalidError
from kubetee.attestation.verifier import verify_quote
from tests.unit.sgx.simulation import ISSUED, REPORT_DATA, VERIFY_AT, SimulatedWorld


@pytest.fixture(scope="module")
def collateral(world: SimulatedWorld) -> Collateral:
    return Collateral.from_dict(world.authority.collateral(now=ISSUED))


@pytest.mark.parametrize(
    ("status", "advisories"),
    [
        ("UpToDate", ()),
        ("SWHardeningNeeded", ("INTEL-SA-00615",)),
        ("OutOfDate", ("INTEL-SA-00828", "INTEL-SA-00615")),
    ],
)
def test_configured_status_comes_out(
    world: SimulatedWorld, collateral: Collateral, status: str, advisories: tuple[str, ...]
) -> None:
    verified = verify_quote(
        world.quote(status), collateral, root_ca_der=world.authority.root_ca_der, now=VERIFY_AT
    )
    assert verified.tcb_status == status
    assert verified.advisory_ids == advisories
    assert verified.mrenclave == world.mrenclave
    assert verified.mrsigner == world.signer.mrsigner
    assert (verified.isv_prod_id, verified.isv_svn, verified.debug) == (7, 2, False)
    assert verified.report_data == REPORT_DATA.ljust(64, b"\0")
    assert verified.fmspc == world.authority.settings.fmspc


def test_debug_enclave_is_reported_as_debug(world: SimulatedWorld, collateral: Collateral) -> None:
    verified = verify_quote(
        world.quote(debug=True), collateral, root_ca_der=world.authority.root_ca_der, now=VERIFY_AT
    )
    assert verified.debug


@pytest.mark.parametrize("status", ["UpToDate", "SWHardeningNeeded", "OutOfDate", "Revoked"])
def test_simulated_quote_is_refused_with_the_intel_root(
    world: SimulatedWorld, collateral: Collateral, intel_root: bytes, status: str
) -> None:
    with pytest.raises(CertificateChainInvalidError) as caught:
        verify_quote(world.quote(status), collateral, root_ca_der=intel_root, now=VERIFY_AT)
    assert caught.value.code == "ROOT_CA_MISMATCH"


def test_verification_result_serializes_as_the_cli_prints_it(
    world: SimulatedWorld, collateral: Collateral
) -> None:
    document = verify_quote(
        world.quote(), collateral, root_ca_der=world.authority.root_ca_der, now=VERIFY_AT
    ).to_json()
    assert document["verified"] is True
    assert document["mrenclave"] == world.mrenclave.hex()
    assert document["fmspc"] == world.authority.settings.fmspc.hex().upper()
    assert set(document) == {
        "verified",
        "tcb_status",
        "advisory_ids",
        "mrenclave",
        "mrsigner",
        "isv_prod_id",
        "isv_svn",
        "debug",
        "report_data",
        "fmspc",
        "tcb_evaluation_data_number",
    }
