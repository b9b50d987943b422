"""The service reads each quote once: the bytes that name its platform (to fetch the
right collateral) are the bytes the verifier checks, so one parse serves both."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from enclave_runtime.sgx import quote as quote_format
from kubetee.attestation import verifier as verifier_module
from kubetee.attestation.collateral import Collateral
from kubetee.attestation.errors import QuoteMalformedError
from kubetee.attestation.verifier import verify_quote
from kubetee.attestation_service.evidence import DcapEvidenceVerifier
from tests.unit.attestation.conftest import RealSample


class _Fixed:
    """Collateral source answering the sample's collateral; counts its calls."""

    def __init__(self, collateral: Collateral) -> None:
        self.collateral = collateral
        self.calls = 0

    async def collateral_for(self, fmspc: bytes, ca: str, now: datetime) -> Collateral:
        self.calls += 1
        return self.collateral


async def test_a_quote_is_parsed_once_for_its_platform_and_its_verification(
    real: RealSample, intel_root: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    readings: list[bytes] = []

    def counted(data: bytes) -> quote_format.Quote:
        readings.append(bytes(data))
        return quote_format.parse_quote(data)

    monkeypatch.setattr(verifier_module, "parse_quote", counted)
    service = DcapEvidenceVerifier(intel_root, _Fixed(real.collateral))
    verified = await service.verify(real.quote, datetime.fromtimestamp(real.now, UTC))
    assert readings == [real.quote]
    monkeypatch.undo()
    assert verified == verify_quote(
        real.quote, real.collateral, root_ca_der=intel_root, now=real.now
    )


async def test_a_malformed_quote_is_refused_before_any_collateral_is_fetched(
    real: RealSample, intel_root: bytes
) -> None:
    source = _Fixed(real.collateral)
    service = DcapEvidenceVerifier(intel_root, source)
    with pytest.raises(QuoteMalformedError) as refused:
        await service.verify(real.quote[:100], datetime.fromtimestamp(real.now, UTC))
    assert refused.value.code == "QUOTE_TRUNCATED"
    assert source.calls == 0
