"""A bounded, seeded fuzz run of the verifier: every mutated input gets a typed refusal.

Byte-level mutations of a simulated and a real quote (the PCK certificate chain included),
of each collateral field, and hostile verification times. The seed is fixed, so every run
tries the same inputs; the counts keep the run to a few seconds.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import pytest

from kubetee.attestation.collateral import Collateral
from kubetee.attestation.errors import AttestationError
from kubetee.attestation.verifier import QuoteVerifier, VerifiedQuote
from tests.unit.attestation.conftest import RealSample
from tests.unit.sgx.simulation import ISSUED, VERIFY_AT, simulated_world

SEED = 20261130
QUOTE_MUTATIONS = 240
COLLATERAL_MUTATIONS = 300


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One byte-level mutation: a flipped bit, a cut, an insertion or an overwrite."""
    buffer = bytearray(data)
    offset = rng.randrange(len(buffer))
    kind = rng.choice(("bit", "bit", "cut", "insert", "overwrite"))
    if kind == "bit":
        buffer[offset] ^= 1 << rng.randrange(8)
    elif kind == "cut":
        del buffer[offset : offset + rng.randint(1, 32)]
    elif kind == "insert":
        buffer[offset:offset] = rng.randbytes(rng.randint(1, 32))
    else:
        chunk = rng.randbytes(rng.randint(1, 32))
        buffer[offset : offset + len(chunk)] = chunk
    return bytes(buffer)


def _outcome(verifier: QuoteVerifier, quote: bytes, collateral: Collateral, now: object) -> object:
    try:
        return verifier.verify(quote, collateral, now=now)  # type: ignore[arg-type]
    except AttestationError as error:
        refusal = error
    assert refusal.code
    assert refusal.reason
    assert refusal.message
    return refusal.code


@pytest.mark.parametrize("sample", ["simulated", "real"])
def test_mutated_quotes_are_refused_or_verify_as_the_original(
    sample: str, real: RealSample, intel_root: bytes
) -> None:
    if sample == "real":
        quote, collateral, now = real.quote, real.collateral, real.now
        verifier = QuoteVerifier(intel_root)
    else:
        world = simulated_world()
        quote = world.quote()
        collateral = Collateral.from_dict(world.authority.collateral(now=ISSUED))
        now, verifier = int(VERIFY_AT.timestamp()), QuoteVerifier(world.authority.root_ca_der)
    original = verifier.verify(quote, collateral, now=now)
    rng = random.Random(f"{SEED}-{sample}")  # noqa: S311  # reproducible inputs
    codes: set[str] = set()
    # Half the mutations land in the PCK certificate chain, where parsing is hardest.
    chain_start = quote.index(b"-----BEGIN")
    for index in range(QUOTE_MUTATIONS):
        if index % 2:
            mutated = quote[:chain_start] + mutate(quote[chain_start:], rng)
        else:
            mutated = mutate(quote, rng)
        result = _outcome(verifier, mutated, collateral, now)
        if isinstance(result, VerifiedQuote):
            assert result == original  # e.g. a PEM line break: not evidence
        else:
            codes.add(str(result))
    assert len(codes) > 5  # the run reached many different checks


def _collateral_inputs(fields: dict[str, str], rng: random.Random) -> Iterator[object]:
    names = sorted(fields)
    for _ in range(COLLATERAL_MUTATIONS):
        name = rng.choice(names)
        value = fields[name].encode("utf-8", "surrogatepass")
        changed = dict(fields)
        changed[name] = mutate(value, rng).decode("utf-8", "surrogateescape")
        yield changed
    deep = "[" * 100_000 + "]" * 100_000
    for name in ("tcb_info", "qe_identity"):
        yield {**fields, name: deep}
        yield {**fields, name: fields[name].replace('"', '"\ud800', 1)}  # lone surrogate
        yield {**fields, name: fields[name] + "é"}
    for name in ("pck_crl_issuer_chain", "tcb_info_issuer_chain", "qe_identity_issuer_chain"):
        yield {**fields, name: fields[name].replace("A", "Ä", 3)}
    yield {**fields, "root_ca_crl": "zz"}
    yield [fields]
    yield {**fields, "tcb_info": 7}


def test_mutated_collateral_is_refused_with_a_code() -> None:
    world = simulated_world()
    fields = world.authority.collateral(now=ISSUED)
    verifier = QuoteVerifier(world.authority.root_ca_der)
    quote = world.quote()
    rng = random.Random(SEED)  # noqa: S311  # reproducible inputs, not secrets
    codes: set[str] = set()
    for candidate in _collateral_inputs(fields, rng):
        try:
            collateral = Collateral.from_dict(candidate)  # type: ignore[arg-type]
        except AttestationError as error:
            codes.add(error.code)
            continue
        result = _outcome(verifier, quote, collateral, VERIFY_AT)
        if isinstance(result, str):
            codes.add(result)
    assert "COLLATERAL_MALFORMED" in codes
    assert len(codes) > 5


def test_collateral_json_text_that_is_not_json_is_refused() -> None:
    for text in ("{", "[" * 50_000, "\udcff", '{"a": NaN}'):
        with pytest.raises(AttestationError) as caught:
            Collateral.from_json(text)
        assert caught.value.code == "COLLATERAL_MALFORMED"
    assert json.loads('{"a": 1}')


@pytest.mark.parametrize(
    "now",
    [float("nan"), float("inf"), -float("inf"), -1, 10**30, 1e300, True, "1751000000", 2**64],
)
def test_hostile_verification_times_are_refused(
    now: object, real: RealSample, intel_root: bytes
) -> None:
    with pytest.raises(AttestationError) as caught:
        QuoteVerifier(intel_root).verify(real.quote, real.collateral, now=now)  # type: ignore[arg-type]
    assert caught.value.code == "VERIFICATION_TIME_INVALID"
