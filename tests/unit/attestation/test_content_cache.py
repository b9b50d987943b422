"""What depends on bytes alone, remembered by content: the uncached verifier reads and
checks the same collateral once, yet any changed byte is read and checked afresh, and
the quote's own signatures are checked on every call."""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography import x509

from enclave_runtime.sgx.quote import parse_quote
from kubetee.attestation import content_cache
from kubetee.attestation.errors import (
    CertificateChainInvalidError,
    CollateralExpiredError,
    CollateralInvalidError,
    QuoteSignatureInvalidError,
)
from kubetee.attestation.verifier import QuoteVerifier, verify_quote
from kubetee.pcs.registry import platform_of_certificate
from tests.unit.attestation.conftest import RealSample
from tests.unit.sgx.simulation import SimulatedWorld


def _flip(signature: bytes, index: int = 10) -> bytes:
    return signature[:index] + bytes([signature[index] ^ 1]) + signature[index + 1 :]


def test_collateral_read_once_still_has_its_signatures_checked(
    real: RealSample, intel_root: bytes
) -> None:
    good = verify_quote(real.quote, real.collateral, root_ca_der=intel_root, now=real.now)
    # The same texts, already read, under signatures that do not match them.
    forged_tcb = replace(
        real.collateral, tcb_info_signature=_flip(real.collateral.tcb_info_signature)
    )
    forged_qe = replace(
        real.collateral, qe_identity_signature=_flip(real.collateral.qe_identity_signature)
    )

    with pytest.raises(CollateralInvalidError) as tcb:
        verify_quote(real.quote, forged_tcb, root_ca_der=intel_root, now=real.now)
    with pytest.raises(CollateralInvalidError) as qe:
        verify_quote(real.quote, forged_qe, root_ca_der=intel_root, now=real.now)

    assert tcb.value.code == "TCB_INFO_SIGNATURE_INVALID"
    assert qe.value.code == "QE_IDENTITY_SIGNATURE_INVALID"
    assert verify_quote(real.quote, real.collateral, root_ca_der=intel_root, now=real.now) == good


def test_a_quote_with_a_read_chain_still_has_its_signatures_checked(
    real: RealSample, intel_root: bytes
) -> None:
    verify_quote(real.quote, real.collateral, root_ca_der=intel_root, now=real.now)
    altered = bytearray(real.quote)
    altered[100] ^= 1  # the enclave report body: the PCK chain is unchanged

    with pytest.raises(QuoteSignatureInvalidError) as refused:
        verify_quote(bytes(altered), real.collateral, root_ca_der=intel_root, now=real.now)

    assert refused.value.code == "ISV_SIGNATURE_INVALID"


def test_the_same_content_is_read_once_and_failures_are_not_kept(real: RealSample) -> None:
    text = real.collateral.tcb_info
    # An equal string built anew: the key is the content, not the object.
    assert content_cache.tcb_info("".join(text)) is content_cache.tcb_info(text)
    for _ in range(2):
        with pytest.raises(CollateralInvalidError):
            content_cache.tcb_info("{not json")


def test_forgetting_everything_gives_the_same_result(real: RealSample, intel_root: bytes) -> None:
    warm = verify_quote(real.quote, real.collateral, root_ca_der=intel_root, now=real.now)
    content_cache.forget()
    assert content_cache.tcb_info.cache_info().currsize == 0
    cold = verify_quote(real.quote, real.collateral, root_ca_der=intel_root, now=real.now)
    assert cold == warm


def test_a_chain_and_collateral_verified_under_one_root_are_not_trusted_under_another(
    real: RealSample, intel_root: bytes, world: SimulatedWorld
) -> None:
    verify_quote(real.quote, real.collateral, root_ca_der=intel_root, now=real.now)
    other_root = world.authority.root_ca_der

    with pytest.raises(CertificateChainInvalidError) as refused:
        verify_quote(real.quote, real.collateral, root_ca_der=other_root, now=real.now)
    with pytest.raises(CollateralInvalidError) as collateral_refused:
        QuoteVerifier(other_root).trusted_tcb(real.collateral, now=real.now)

    assert refused.value.code == "ROOT_CA_MISMATCH"
    assert collateral_refused.value.code == "CRL_ISSUER_MISMATCH"  # Intel's root CRL


def test_a_remembered_chain_and_collateral_still_have_their_times_checked(
    real: RealSample, intel_root: bytes
) -> None:
    verify_quote(real.quote, real.collateral, root_ca_der=intel_root, now=real.now)
    a_year_later = real.now + 365 * 86400

    with pytest.raises(CollateralExpiredError):
        verify_quote(real.quote, real.collateral, root_ca_der=intel_root, now=a_year_later)


def test_shared_tables_are_bounded_and_forgotten_with_the_rest() -> None:
    table = content_cache.shared_table()
    for key in range(300):
        table.put(key, key)
    assert len(table) == 256
    assert table.get(0) is None
    assert table.get(299) == 299

    content_cache.forget()
    assert len(table) == 0


def test_the_verified_quote_names_the_platform_its_pck_certificate_states(
    real: RealSample, intel_root: bytes
) -> None:
    verified = verify_quote(real.quote, real.collateral, root_ca_der=intel_root, now=real.now)
    pck = x509.load_pem_x509_certificates(parse_quote(real.quote).certification_data.rstrip(b"\0"))[
        0
    ]
    ppid, key_sha256, fmspc = platform_of_certificate(pck)

    assert (verified.ppid, verified.pck_key_sha256, verified.fmspc) == (ppid, key_sha256, fmspc)
