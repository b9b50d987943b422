"""The service's cheaper paths answer exactly as the general ones they replace: the
escaping of client text, JSON responses (the challenge, token and JWE bodies written
without the general encoder), and the primary evidence read without validating the
parsed body twice."""

from __future__ import annotations

import base64
import binascii
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import JsonValue, ValidationError

from enclave_runtime.kbs_protocol import (
    Attestation,
    CompositeEvidence,
    JweResponse,
    RuntimeData,
    SgxEvidence,
    TeeKeyPair,
    encrypt_to_tee_key,
)
from kubetee.attestation_service.app import (
    _SELECTED_HASH,
    _challenge_json,
    _json,
    _json_strings,
    _jwe_members,
    _quote_of,
    _strict_base64,
)
from kubetee.attestation_service.errors import BadRequestError
from kubetee.attestation_service.printable import printable

_KEY = TeeKeyPair.generate().public_jwk()
_JSON: st.SearchStrategy[JsonValue] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)
_QUOTE_TEXT = (
    st.sampled_from(["", "%%%", "AAAA", "AAA=", "QUJD", "QUJ", " QUJD", "QUJD\n", "QUJD=", "=QUJD"])
    | st.binary(max_size=48).map(lambda raw: base64.b64encode(raw).decode())
    # Padding in every place, other alphabets, white space, non-ASCII.
    | st.text(alphabet="AQg+/=-_ \né", max_size=12)
)


def _escaped(value: object, limit: int) -> str:
    """How ``printable`` escapes, character by character (its definition)."""
    text = value if isinstance(value, str) else str(value)
    cleaned = "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text[: limit + 1]
    )
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "..."


@given(text=st.text(), limit=st.integers(min_value=0, max_value=50))
def test_printable_text_is_escaped_as_character_by_character(text: str, limit: int) -> None:
    assert printable(text, limit) == _escaped(text, limit)


@pytest.mark.parametrize(
    "document",
    [{"status": "ok"}, {"token": "a.b.c"}, {"detail": "é \n \u2028", "n": [1, 2.5, None]}],
)
def test_json_responses_are_json_dumps_typed_as_utf8_json(document: dict[str, object]) -> None:
    ours = _json(document, status=403)

    assert (ours.status, ours.body, ours.content_type, ours.headers) == (
        403,
        json.dumps(document).encode(),
        "application/json; charset=utf-8",
        [],
    )


@given(members=st.dictionaries(st.text(), st.text(), max_size=6))
def test_an_object_of_strings_is_written_as_json_dumps_writes_it(members: dict[str, str]) -> None:
    assert _json_strings(members.items()) == json.dumps(members)


@given(nonce=st.text())
def test_the_challenge_body_is_json_dumps_of_the_challenge(nonce: str) -> None:
    assert _challenge_json(nonce) == json.dumps({"nonce": nonce, "extra-params": _SELECTED_HASH})


@pytest.mark.parametrize("aad", [None, "YWFk"])
def test_the_jwe_body_is_json_dumps_of_its_wire_form(aad: str | None) -> None:
    wrapped = encrypt_to_tee_key(b"secret", _KEY)
    if aad is not None:
        wrapped = wrapped.model_copy(update={"aad": aad})

    assert _json_strings(_jwe_members(wrapped)) == json.dumps(wrapped.to_wire())
    # Every field the model has is written: one added later fails here first.
    assert {name for name, _ in _jwe_members(wrapped.model_copy(update={"aad": "x"}))} == set(
        JweResponse.model_fields
    )


def _attestation(primary_evidence: JsonValue) -> Attestation:
    return Attestation(
        runtime_data=RuntimeData(nonce="n", tee_pubkey=_KEY),
        tee_evidence=CompositeEvidence(primary_evidence=primary_evidence),
    )


def _by_the_model(primary_evidence: JsonValue) -> bytes | None:
    """The quote SgxEvidence and strict base64 give, None for a refusal."""
    try:
        evidence = SgxEvidence.model_validate(primary_evidence)
        return base64.b64decode(evidence.quote, validate=True)
    except (ValidationError, binascii.Error, ValueError):
        return None


@given(
    primary_evidence=_JSON
    | st.fixed_dictionaries({"quote": _QUOTE_TEXT | _JSON})
    | st.fixed_dictionaries({"quote": _QUOTE_TEXT}, optional={"other": _JSON})
)
def test_the_quote_is_read_as_sgx_evidence_reads_it(primary_evidence: JsonValue) -> None:
    expected = _by_the_model(primary_evidence)
    if expected is None:
        with pytest.raises(BadRequestError, match="primary_evidence must be"):
            _quote_of(_attestation(primary_evidence))
    else:
        assert _quote_of(_attestation(primary_evidence)) == expected


def _by_b64decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


@given(
    text=_QUOTE_TEXT
    | st.binary(max_size=64).map(lambda raw: base64.b64encode(raw).decode() + "=")
    | st.binary(min_size=1, max_size=64).map(lambda raw: base64.b64encode(raw).decode()[:-1])
    | st.text(alphabet="ABab019+/=", max_size=16)
)
def test_the_strict_decoding_answers_as_b64decode_validating(text: str) -> None:
    expected = _by_b64decode(text)
    if expected is None:
        with pytest.raises((binascii.Error, ValueError)):
            _strict_base64(text)
    else:
        assert _strict_base64(text) == expected
