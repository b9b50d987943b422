"""The runtime's JWE decryption (``cryptography`` primitives): it opens what joserfc and
Trustee's KBS send, joserfc opens what the service sends, and every malformed or
foreign response is a specific :class:`KbsProtocolError`, never another exception."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jwe
from joserfc.jwk import ECKey

from enclave_runtime.kbs_protocol import (
    JweResponse,
    KbsProtocolError,
    TeeKeyPair,
    TeePubKey,
    decrypt_response,
    encrypt_to_tee_key,
)
from enclave_runtime.kbs_protocol import jwe as jwe_module
from enclave_runtime.kbs_protocol.keys import Curve

DATA = Path(__file__).resolve().parents[2] / "data" / "jwe"
SECRET = b"top secret \x00\xff value"
KEY = TeeKeyPair.generate()
RESPONSE = encrypt_to_tee_key(SECRET, KEY.public_jwk())
FIELDS = ("protected", "encrypted_key", "iv", "ciphertext", "tag")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def from_compact(compact: str) -> JweResponse:
    return JweResponse(**dict(zip(FIELDS, compact.split("."), strict=True)))


def to_compact(response: JweResponse) -> str:
    return ".".join(getattr(response, name) for name in FIELDS)


def header_of(response: JweResponse) -> dict[str, Any]:
    header: dict[str, Any] = json.loads(unb64(response.protected))
    return header


def with_header(header: object, response: JweResponse = RESPONSE) -> JweResponse:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return response.model_copy(update={"protected": b64(raw)})


def refused(response: JweResponse, key: TeeKeyPair = KEY) -> str:
    with pytest.raises(KbsProtocolError) as caught:
        decrypt_response(response, key)
    message = str(caught.value)
    assert SECRET.decode("latin-1") not in message
    return message


# -- interoperability ---------------------------------------------------------------------


@pytest.mark.parametrize("curve", ["P-256", "P-384", "P-521"])
@pytest.mark.parametrize(
    "extra", [{}, {"apu": b64(b"Alice"), "apv": b64(b"Bob")}], ids=["plain", "apu-apv"]
)
def test_what_joserfc_encrypts_decrypts_here(curve: Curve, extra: dict[str, str]) -> None:
    key = TeeKeyPair.generate(curve)
    protected = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", **extra}

    compact = jwe.encrypt_compact(protected, SECRET, ECKey.import_key(key.private_key.public_key()))

    assert decrypt_response(from_compact(compact), key) == SECRET


@pytest.mark.parametrize("curve", ["P-256", "P-384", "P-521"])
def test_what_the_service_encrypts_joserfc_decrypts(curve: Curve) -> None:
    key = TeeKeyPair.generate(curve)
    response = encrypt_to_tee_key(SECRET, key.public_jwk())

    opened = jwe.decrypt_compact(to_compact(response), ECKey.import_key(key.private_key))

    assert opened.plaintext == SECRET
    assert decrypt_response(response, key) == SECRET


def test_a_jwe_in_trustees_layout_decrypts() -> None:
    vector = json.loads((DATA / "trustee_ecdh_es_a256kw_p256.json").read_text())
    d = int.from_bytes(unb64(vector["tee_key"]["d"]), "big")
    key = TeeKeyPair(ec.derive_private_key(d, ec.SECP256R1()))

    plaintext = decrypt_response(JweResponse.model_validate(vector["response"]), key)

    assert plaintext == unb64(vector["plaintext_base64url"])
    # The header bytes as serde writes them: alg, enc, then epk with sorted members.
    assert list(header_of(JweResponse.model_validate(vector["response"]))) == ["alg", "enc", "epk"]


def test_the_key_pair_is_a_cryptography_key_with_its_jwk_made_once() -> None:
    for curve, size in (("P-256", 32), ("P-384", 48), ("P-521", 66)):
        key = TeeKeyPair.generate(curve)  # type: ignore[arg-type]
        jwk = key.public_jwk()
        numbers = key.private_key.public_key().public_numbers()
        assert jwk is key.public_jwk()
        assert (jwk.crv, key.crv, jwk.alg) == (curve, curve, "ECDH-ES+A256KW")
        assert unb64(jwk.x) == numbers.x.to_bytes(size, "big")
        assert unb64(jwk.y) == numbers.y.to_bytes(size, "big")
        # What the service reads back from the wire is the same key.
        assert TeePubKey.model_validate(jwk.to_wire()) == jwk
    with pytest.raises(ValueError, match="secp256k1"):
        TeeKeyPair(ec.generate_private_key(ec.SECP256K1()))


# -- refusals -----------------------------------------------------------------------------

HEADER = header_of(RESPONSE)
EPK = HEADER["epk"]
GX = "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY"


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (with_header({**HEADER, "alg": "ECDH-ES"}), "alg must be ECDH-ES\\+A256KW"),
        (with_header({**HEADER, "alg": "RSA-OAEP-256"}), "alg must be"),
        (with_header({**HEADER, "enc": "A128GCM"}), "enc must be A256GCM"),
        (with_header({**HEADER, "enc": ["A256GCM"]}), "enc must be A256GCM"),
        (with_header({**HEADER, "crit": ["exp"]}), "has 'crit'"),
        (with_header({**HEADER, "zip": "DEF"}), "has 'zip'"),
        (with_header([HEADER]), "not a JSON object"),
        (with_header(b"{not json"), "not UTF-8 JSON"),
        (with_header(b'{"alg": "\xff"}'), "not UTF-8 JSON"),
        (with_header(b"[" * 5000), "over 4096"),
        (with_header(b"[" * 3000), "not UTF-8 JSON"),
        (
            with_header(
                b'{"alg":"ECDH-ES+A256KW","alg":"dir","enc":"A256GCM","epk":'
                + json.dumps(EPK).encode()
                + b"}"
            ),
            "repeats member 'alg'",
        ),
        (with_header({k: v for k, v in HEADER.items() if k != "epk"}), "no epk object"),
        (with_header({**HEADER, "epk": {**EPK, "kty": "OKP"}}), "EC key on P-256"),
        (with_header({**HEADER, "epk": {**EPK, "crv": "P-384"}}), "EC key on P-256"),
        (with_header({**HEADER, "epk": {**EPK, "x": GX, "y": GX}}), "not a point on P-256"),
        (with_header({**HEADER, "epk": {**EPK, "y": "A" * 43}}), "not a point on P-256"),
        (with_header({**HEADER, "epk": {**EPK, "x": EPK["x"][:-3]}}), "must be 32 bytes"),
        (with_header({**HEADER, "epk": {**EPK, "x": 7}}), "no x and y"),
        (with_header({**HEADER, "epk": {**EPK, "x": EPK["x"] + "="}}), "epk x is not base64url"),
        (with_header({**HEADER, "apu": 5}), "apu is not a base64url string"),
        (with_header({**HEADER, "apv": "a+b/"}), "apv is not base64url"),
        (RESPONSE.model_copy(update={"protected": ""}), "no protected header"),
        (RESPONSE.model_copy(update={"protected": RESPONSE.protected + "="}), "not base64url"),
        (RESPONSE.model_copy(update={"iv": RESPONSE.iv + "=="}), "iv is not base64url"),
        (RESPONSE.model_copy(update={"tag": "+" + RESPONSE.tag[1:]}), "tag is not base64url"),
        (RESPONSE.model_copy(update={"ciphertext": "A"}), "ciphertext is not base64url"),
        (RESPONSE.model_copy(update={"tag": RESPONSE.tag[:-1] + "B"}), "tag is not canonical"),
        (RESPONSE.model_copy(update={"iv": b64(bytes(16))}), "iv must be 12 bytes"),
        (RESPONSE.model_copy(update={"tag": b64(bytes(12))}), "tag must be 16 bytes"),
        (RESPONSE.model_copy(update={"encrypted_key": b64(bytes(48))}), "must be 40 bytes"),
        (RESPONSE.model_copy(update={"aad": b64(b"x")}), "additional authenticated data"),
        (RESPONSE.model_copy(update={"encrypted_key": b64(bytes(40))}), "key unwrap failed"),
        (
            RESPONSE.model_copy(update={"ciphertext": b64(bytes(len(unb64(RESPONSE.ciphertext))))}),
            "authentication tag is wrong",
        ),
        (RESPONSE.model_copy(update={"tag": b64(bytes(16))}), "authentication tag is wrong"),
        # The header is authenticated: an added member (still a valid header) fails the tag.
        (with_header({**HEADER, "kid": "other"}), "authentication tag is wrong"),
    ],
)
def test_malformed_responses_are_refused_specifically(response: JweResponse, message: str) -> None:
    assert refused(response) is not None
    with pytest.raises(KbsProtocolError, match=message):
        decrypt_response(response, KEY)


def test_another_tee_keys_response_does_not_decrypt() -> None:
    assert "key unwrap failed" in refused(RESPONSE, TeeKeyPair.generate())
    assert "EC key on P-384" in refused(RESPONSE, TeeKeyPair.generate("P-384"))


# -- fuzzing ------------------------------------------------------------------------------

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=10,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    field=st.sampled_from(FIELDS),
    position=st.integers(min_value=0, max_value=400),
    mutation=st.sampled_from(["flip", "drop", "insert", "truncate", "replace"]),
    text=st.text(alphabet=st.sampled_from(B64URL + "=+/.%\x00é "), min_size=1, max_size=6),
)
def test_mutated_responses_never_raise_anything_else(
    field: str, position: int, mutation: str, text: str
) -> None:
    value: str = getattr(RESPONSE, field)
    at = position % (len(value) + 1)
    if mutation == "flip":
        raw = bytearray(unb64(value))
        if raw:
            raw[at % len(raw)] ^= 1 << (position % 8)
        mutated = b64(bytes(raw))
    elif mutation == "drop":
        mutated = value[:at] + value[at + 1 :]
    elif mutation == "insert":
        mutated = value[:at] + text + value[at:]
    elif mutation == "truncate":
        mutated = value[:at]
    else:
        mutated = text
    response = RESPONSE.model_copy(update={field: mutated})
    if mutated == value:  # a mutation that changed nothing: it still decrypts
        assert decrypt_response(response, KEY) == SECRET
    else:  # anything else is a protocol error (refused() fails on any other exception)
        refused(response)


@settings(max_examples=300, deadline=None)
@given(
    header=st.dictionaries(
        st.sampled_from(["alg", "enc", "epk", "crit", "zip", "apu", "apv", "kid"]), json_values
    ),
    epk=st.dictionaries(st.sampled_from(["kty", "crv", "x", "y", "d"]), json_values),
    keep=st.sets(st.sampled_from(["alg", "enc", "epk"])),
)
def test_arbitrary_headers_are_refused_as_protocol_errors(
    header: dict[str, Any], epk: dict[str, Any], keep: set[str]
) -> None:
    # Start from the real header's members (those kept) so later checks are reached too.
    built = {**header, **{name: HEADER[name] for name in keep}}
    if "epk" in keep:
        built["epk"] = {**EPK, **epk}
    response = with_header(built)
    if response.protected == RESPONSE.protected:
        return
    with pytest.raises(KbsProtocolError):
        decrypt_response(response, KEY)


# -- the short paths, against the general ones ---------------------------------------------


def _general_unb64url(value: str) -> bytes | str:
    """Strict base64url read the general way (alphabet by regex, decode, re-encode): the
    bytes, or the refusal's kind."""
    if not re.fullmatch(r"[A-Za-z0-9_-]*", value):
        return "not base64url"
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        return "not base64url"
    return raw if b64(raw) == value else "not canonical base64url"


_BASE64ISH = st.text(
    st.sampled_from(
        "AQgw09_-+/=" + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    )
    | st.characters()
)


@settings(max_examples=2000, deadline=None)
@given(value=_BASE64ISH | st.binary().map(b64) | st.binary(min_size=1).map(lambda b: b64(b)[:-1]))
def test_base64url_is_read_as_the_general_strict_reading_reads_it(value: str) -> None:
    expected = _general_unb64url(value)
    try:
        got: bytes | str = jwe_module._unb64url(value, "field")
    except KbsProtocolError as exc:
        got = str(exc).removeprefix("resource JWE field is ")
    assert got == expected


@settings(max_examples=300, deadline=None)
@given(shared=st.binary(min_size=1, max_size=80), apu=st.binary(), apv=st.binary())
def test_the_key_encryption_key_is_concat_kdfs(shared: bytes, apu: bytes, apv: bytes) -> None:
    other_info = b"".join(
        len(part).to_bytes(4, "big") + part for part in (b"ECDH-ES+A256KW", apu, apv)
    ) + (256).to_bytes(4, "big")
    kdf = ConcatKDFHash(algorithm=hashes.SHA256(), length=32, otherinfo=other_info)

    assert jwe_module._key_encryption_key(shared, apu, apv) == kdf.derive(shared)
