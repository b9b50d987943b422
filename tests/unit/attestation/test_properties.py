"""Property tests: random and mutated input never crashes the parser or the verifier."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enclave_runtime.sgx.quote import QuoteFormatError, parse_quote
from kubetee.attestation.collateral import Collateral
from kubetee.attestation.errors import AttestationError
from kubetee.attestation.verifier import QuoteVerifier, VerifiedQuote
from tests.unit.attestation.conftest import RealSample
from tests.unit.sgx.simulation import ISSUED, VERIFY_AT, simulated_world

FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _sim() -> tuple[bytes, Collateral, QuoteVerifier]:
    world = simulated_world()
    collateral = Collateral.from_dict(world.authority.collateral(now=ISSUED))
    return world.quote(), collateral, QuoteVerifier(world.authority.root_ca_der)


SIM_QUOTE, SIM_COLLATERAL, SIM_VERIFIER = _sim()
SIM_RESULT = SIM_VERIFIER.verify(SIM_QUOTE, SIM_COLLATERAL, now=VERIFY_AT)


@FAST
@given(st.binary(max_size=6000))
def test_parser_on_random_bytes_raises_only_format_errors(data: bytes) -> None:
    outcome: object
    try:
        outcome = parse_quote(data)
    except QuoteFormatError as error:
        outcome = error.code
    if isinstance(outcome, str):
        assert outcome.startswith("QUOTE_")
    else:
        assert outcome.to_bytes() == data


@FAST
@given(st.binary(max_size=6000))
def test_verifier_on_random_bytes_refuses_with_a_code(data: bytes) -> None:
    with pytest.raises(AttestationError) as caught:
        SIM_VERIFIER.verify(data, SIM_COLLATERAL, now=VERIFY_AT)
    assert caught.value.code
    assert caught.value.message


def _outcome(quote: bytes) -> VerifiedQuote | str:
    try:
        return SIM_VERIFIER.verify(quote, SIM_COLLATERAL, now=VERIFY_AT)
    except AttestationError as error:
        return f"{error.code}: {error.message}"


@FAST
@given(st.data())
def test_mutated_quote_verifies_unchanged_or_is_refused(data: st.DataObject) -> None:
    quote = bytearray(SIM_QUOTE)
    kind = data.draw(st.sampled_from(["flip", "cut", "insert", "overwrite"]))
    offset = data.draw(st.integers(0, len(quote) - 1))
    if kind == "flip":
        quote[offset] ^= data.draw(st.integers(1, 255))
    elif kind == "cut":
        del quote[offset : offset + data.draw(st.integers(1, 64))]
    elif kind == "insert":
        quote[offset:offset] = data.draw(st.binary(min_size=1, max_size=64))
    else:
        chunk = data.draw(st.binary(min_size=1, max_size=64))
        quote[offset : offset + len(chunk)] = chunk
    outcome = _outcome(bytes(quote))
    # Some bytes are not evidence (PEM line breaks, the NUL after the chain): changing them
    # may still verify, but then exactly as the original did.
    assert outcome == SIM_RESULT or (isinstance(outcome, str) and ": " in outcome)


@FAST
@given(data=st.data())
def test_mutated_real_quote_verifies_unchanged_or_is_refused(
    real: RealSample, intel_root: bytes, data: st.DataObject
) -> None:
    verifier = QuoteVerifier(intel_root)
    original = verifier.verify(real.quote, real.collateral, now=real.now)
    quote = bytearray(real.quote)
    offset = data.draw(st.integers(0, len(quote) - 1))
    quote[offset] ^= data.draw(st.integers(1, 255))
    result: VerifiedQuote | str
    try:
        result = verifier.verify(bytes(quote), real.collateral, now=real.now)
    except AttestationError as error:
        result = error.code
    assert result == original or (isinstance(result, str) and result)


@FAST
@given(
    st.sampled_from(["tcb_info", "qe_identity"]),
    st.integers(0, 10_000),
    st.characters(codec="ascii"),
)
def test_collateral_text_changes_are_refused(field: str, position: int, char: str) -> None:
    fields = SIM_COLLATERAL.to_dict()
    text = fields[field]
    index = position % len(text)
    if text[index] == char:
        return
    fields[field] = text[:index] + char + text[index + 1 :]
    with pytest.raises(AttestationError) as caught:
        SIM_VERIFIER.verify(SIM_QUOTE, Collateral.from_dict(fields), now=VERIFY_AT)
    assert caught.value.code.endswith("SIGNATURE_INVALID")
