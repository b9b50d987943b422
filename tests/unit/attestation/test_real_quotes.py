"""Real quotes from Intel SGX hardware give exactly the results the samples' README states."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from kubetee.attestation.errors import CollateralExpiredError, DebugEnclaveError
from kubetee.attestation.policy import AttestationPolicy, apply_policy
from kubetee.attestation.roots import INTEL_SGX_ROOT_CA_SHA256
from kubetee.attestation.verifier import verify_quote
from tests.unit.attestation.conftest import RealSample

WINDOW_START = 1750330571
WINDOW_END = 1752919278


def test_packaged_intel_root_is_the_samples_root(intel_root: bytes, dcap_dir: Path) -> None:
    assert hashlib.sha256(intel_root).hexdigest() == INTEL_SGX_ROOT_CA_SHA256
    assert intel_root == (dcap_dir / "intel_sgx_root_ca.der").read_bytes()


def test_real_quote_verifies_with_the_documented_results(
    real: RealSample, intel_root: bytes
) -> None:
    verified = verify_quote(real.quote, real.collateral, root_ca_der=intel_root, now=real.now)
    assert verified.tcb_status == "ConfigurationAndSWHardeningNeeded"
    assert verified.advisory_ids == ("INTEL-SA-00289", "INTEL-SA-00615")
    assert verified.mrenclave.hex() == (
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    )
    assert verified.mrsigner.hex() == (
        "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
    )
    assert (verified.isv_prod_id, verified.isv_svn, verified.debug) == (0, 0, False)
    assert verified.report_data == b"Hello, world!".ljust(64, b"\0")
    assert verified.fmspc.hex().upper() == "00A067110000"
    assert int(verified.valid_until.timestamp()) == WINDOW_END


@pytest.mark.parametrize("now", [WINDOW_START, WINDOW_END])
def test_real_quote_verifies_at_both_ends_of_its_window(
    real: RealSample, intel_root: bytes, now: int
) -> None:
    verify_quote(real.quote, real.collateral, root_ca_der=intel_root, now=now)


@pytest.mark.parametrize(
    ("now", "code"),
    [
        (WINDOW_END + 1, "COLLATERAL_EXPIRED"),
        (WINDOW_END + 400 * 86400, "COLLATERAL_EXPIRED"),
        (WINDOW_START - 1, "COLLATERAL_NOT_YET_VALID"),
    ],
)
def test_real_quote_outside_the_window_fails_for_that_reason(
    real: RealSample, intel_root: bytes, now: int, code: str
) -> None:
    with pytest.raises(CollateralExpiredError) as caught:
        verify_quote(real.quote, real.collateral, root_ca_der=intel_root, now=now)
    assert caught.value.code == code
    assert caught.value.reason == "CollateralExpired"


def test_debug_quote_verifies_but_the_default_policy_refuses_it(
    real_debug: RealSample, intel_root: bytes
) -> None:
    verified = verify_quote(
        real_debug.quote, real_debug.collateral, root_ca_der=intel_root, now=real_debug.now
    )
    assert verified.debug
    with pytest.raises(DebugEnclaveError) as caught:
        apply_policy(verified, AttestationPolicy(accepted_tcb_statuses=[verified.tcb_status]))
    assert caught.value.code == "DEBUG_ENCLAVE_REJECTED"
    assert caught.value.reason == "DebugEnclaveRejected"
    apply_policy(
        verified,
        AttestationPolicy(allow_debug=True, accepted_tcb_statuses=[verified.tcb_status]),
    )
