"""The cached verifier: same results, and a changed CRL or collateral is never served stale."""

from __future__ import annotations

from dataclasses import replace

import pytest

from enclave_runtime.sgx.authority import SimulatedAuthority
from enclave_runtime.sgx.quote import (
    ISV_SIGNED_SIZE,
    REPORT_BODY_SIZE,
    SIGNATURE_SIZE,
    parse_quote,
)
from kubetee.attestation.collateral import Collateral
from kubetee.attestation.errors import (
    AttestationError,
    CollateralExpiredError,
    VerificationTimeInvalidError,
)
from kubetee.attestation.verifier import QuoteVerifier, verify_quote
from tests.unit.attestation.conftest import RealSample
from tests.unit.sgx.simulation import ISSUED, VERIFY_AT, SimulatedWorld


def test_cached_results_equal_uncached(real: RealSample, intel_root: bytes) -> None:
    verifier = QuoteVerifier(intel_root)
    uncached = verify_quote(real.quote, real.collateral, root_ca_der=intel_root, now=real.now)
    first = verifier.verify(real.quote, real.collateral, now=real.now)
    second = verifier.verify(real.quote, real.collateral, now=real.now)
    assert first == second == uncached


def test_time_is_checked_on_every_call(real: RealSample, intel_root: bytes) -> None:
    verifier = QuoteVerifier(intel_root)
    verifier.verify(real.quote, real.collateral, now=real.now)
    with pytest.raises(CollateralExpiredError):
        verifier.verify(real.quote, real.collateral, now=1752919279)


def test_new_crl_revoking_the_platform_takes_effect(world: SimulatedWorld) -> None:
    authority = SimulatedAuthority.generate(now=ISSUED)
    platform = authority.issue_platform(now=ISSUED)
    quote = platform.quote(parse_quote(world.quote()).report_body)
    verifier = QuoteVerifier(authority.root_ca_der)
    before = Collateral.from_dict(authority.collateral(now=ISSUED))
    verifier.verify(quote, before, now=VERIFY_AT)
    authority.revoke(platform)
    after = Collateral.from_dict(authority.collateral(now=ISSUED))
    assert after.pck_crl != before.pck_crl
    with pytest.raises(AttestationError) as caught:
        verifier.verify(quote, after, now=VERIFY_AT)
    assert caught.value.code == "PCK_REVOKED"
    # The old collateral still says what it said: the cache holds both, keyed by content.
    verifier.verify(quote, before, now=VERIFY_AT)


def test_tampered_collateral_after_a_warm_cache_is_refused(
    real: RealSample, intel_root: bytes
) -> None:
    verifier = QuoteVerifier(intel_root)
    verifier.verify(real.quote, real.collateral, now=real.now)
    tampered = replace(real.collateral, tcb_info=real.collateral.tcb_info.replace("17", "18", 1))
    with pytest.raises(AttestationError) as caught:
        verifier.verify(real.quote, tampered, now=real.now)
    assert caught.value.code == "TCB_INFO_SIGNATURE_INVALID"


@pytest.mark.parametrize(
    ("offset", "what"),
    [(0, "the QE report"), (REPORT_BODY_SIZE, "the QE report's signature")],
)
def test_qe_report_altered_after_a_warm_cache_is_refused(
    real: RealSample, intel_root: bytes, offset: int, what: str
) -> None:
    """The QE report's verified signature is remembered by its exact bytes: a quote with
    the same chain but one bit changed in either is verified afresh, and refused."""
    verifier = QuoteVerifier(intel_root)
    verifier.verify(real.quote, real.collateral, now=real.now)
    start = ISV_SIGNED_SIZE + 4 + SIGNATURE_SIZE + 64 + offset  # where the QE report begins
    tampered = bytearray(real.quote)
    tampered[start + 10] ^= 0x01
    with pytest.raises(AttestationError) as caught:
        verifier.verify(bytes(tampered), real.collateral, now=real.now)
    assert caught.value.code == "QE_REPORT_SIGNATURE_INVALID", what
    assert verifier.verify(real.quote, real.collateral, now=real.now).tcb_status


def test_cache_is_bounded(world: SimulatedWorld) -> None:
    verifier = QuoteVerifier(world.authority.root_ca_der, cache_size=2)
    quote = world.quote()
    for minutes in range(4):
        collateral = Collateral.from_dict(
            world.authority.collateral(now=ISSUED.replace(minute=minutes))
        )
        verifier.verify(quote, collateral, now=VERIFY_AT)
    assert len(verifier._context_cache) == 2


def test_invalid_root_is_refused() -> None:
    with pytest.raises(AttestationError) as caught:
        QuoteVerifier(b"not a certificate")
    assert caught.value.code == "ROOT_CA_INVALID"


def test_naive_time_is_refused(real: RealSample, intel_root: bytes) -> None:
    with pytest.raises(VerificationTimeInvalidError, match="timezone-aware"):
        verify_quote(
            real.quote, real.collateral, root_ca_der=intel_root, now=ISSUED.replace(tzinfo=None)
        )
