"""The service's session formats made with hmac: the attestation token is the HS256 JWT
joserfc would write (a stock client and any JWT library read it), the challenge cookie
an HMAC-SHA256 value only the service reads; tampered, foreign and expired ones get
their typed refusals."""

from __future__ import annotations

import base64
import hmac
import json
import string
from http.cookies import SimpleCookie

import pytest
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.jwk import OctKey

from enclave_runtime.kbs_protocol import SESSION_COOKIE, TeeKeyPair, TeePubKey
from kubetee.attestation_service.errors import (
    AttestationExpiredError,
    NonceExpiredError,
    SessionMissingError,
)
from kubetee.attestation_service.session_tokens import (
    ChallengeCookie,
    Hs256Jwt,
    Mac,
    TokenInvalidError,
)
from kubetee.attestation_service.sessions import AttestedSession, PodRef, SessionSigner

KEY = bytes(range(32))
ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
CLAIMS = {"typ": "kbs-attested", "exp": 1300, "pod": {"name": "p-é"}, "n": [1, 2.5, None]}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_the_jwt_is_byte_for_byte_the_one_joserfc_writes_and_reads() -> None:
    ours = Hs256Jwt(KEY).encode(dict(CLAIMS))

    assert ours == jwt.encode({"alg": "HS256"}, dict(CLAIMS), OctKey.import_key(KEY))
    decoded = jwt.decode(ours, OctKey.import_key(KEY), algorithms=["HS256"])
    assert decoded.header == {"typ": "JWT", "alg": "HS256"}
    assert decoded.claims == CLAIMS
    assert Hs256Jwt(KEY).decode(ours) == CLAIMS


def test_a_jwt_altered_anywhere_or_signed_with_another_key_is_refused() -> None:
    genuine = Hs256Jwt(KEY).encode(dict(CLAIMS))
    header, payload, signature = genuine.split(".")
    extended = _b64url(json.dumps(CLAIMS | {"exp": 99999}, separators=(",", ":")).encode())
    none_header = _b64url(b'{"typ":"JWT","alg":"none"}')
    # The last character of a 32-byte MAC carries 2 unused bits: another letter there
    # decodes to the same bytes, yet it is not the token issued.
    last = ALPHABET.index(signature[-1])
    same_bytes = signature[:-1] + ALPHABET[last ^ 1]
    assert same_bytes != signature
    assert base64.urlsafe_b64decode(same_bytes + "=") == base64.urlsafe_b64decode(signature + "=")
    forged = [
        f"{header}.{extended}.{signature}",
        f"{none_header}.{payload}.",
        f"{none_header}.{payload}.{signature}",
        f"{header}.{payload}.{same_bytes}",
        f"{header}.{payload}",
        f"{header}.{payload}.{signature}.{signature}",
        genuine + "x",
        Hs256Jwt(bytes(32)).encode(dict(CLAIMS)),
        "",
        "é." + genuine,
        "a" * 9000,
    ]
    for value in forged:
        with pytest.raises(TokenInvalidError):
            Hs256Jwt(KEY).decode(value)


def test_a_signed_jwt_must_say_hs256_and_hold_an_object() -> None:
    for header, payload in ((b'{"alg":"HS512"}', b"{}"), (b'{"alg":"HS256"}', b"[1]")):
        signed = f"{_b64url(header)}.{_b64url(payload)}"
        mac = _b64url(hmac.digest(KEY, signed.encode(), "sha256"))
        with pytest.raises(TokenInvalidError):
            Hs256Jwt(KEY).decode(f"{signed}.{mac}")


def test_the_challenge_cookie_round_trips_and_is_cookie_safe() -> None:
    nonce = base64.b64encode(b"\xfb\xff" * 16).decode()  # "+" and "/" in standard base64
    cookie = ChallengeCookie(KEY).encode(nonce, 1060, "a1b2")

    assert ChallengeCookie(KEY).decode(cookie) == (nonce, 1060, "a1b2")
    assert ChallengeCookie(KEY).decode(ChallengeCookie(KEY).encode(nonce, 7, None)) == (
        nonce,
        7,
        None,
    )
    # Sent as it is: no quoting needed in a Set-Cookie header.
    jar: SimpleCookie = SimpleCookie()
    jar[SESSION_COOKIE] = cookie
    assert jar.output(header="") == f" {SESSION_COOKIE}={cookie}"
    assert ChallengeCookie.looks_like_one(cookie)
    assert not ChallengeCookie.looks_like_one(Hs256Jwt(KEY).encode({}))


def test_a_challenge_cookie_altered_in_any_field_is_refused() -> None:
    nonce = base64.b64encode(bytes(32)).decode()
    cookie = ChallengeCookie(KEY).encode(nonce, 1060, "a1b2")
    signed, _, mac = cookie.rpartition(".")
    prefix, expires_at, safe_nonce, replica = signed.split(".")
    altered = [
        f"{prefix}.{int(expires_at) + 1}.{safe_nonce}.{replica}.{mac}",
        f"{prefix}.{expires_at}.{'B' + safe_nonce[1:]}.{replica}.{mac}",
        f"{prefix}.{expires_at}.{safe_nonce}.other.{mac}",
        f"{prefix}.{expires_at}.{safe_nonce}.-.{mac}",
        f"{prefix}.{expires_at}.{safe_nonce}.{replica}",
        f"kc2.{expires_at}.{safe_nonce}.{replica}.{mac}",
        ChallengeCookie(bytes(32)).encode(nonce, 1060, "a1b2"),
        cookie[:-1],
        cookie + ".x",
    ]
    for value in altered:
        with pytest.raises(TokenInvalidError):
            ChallengeCookie(KEY).decode(value)


def test_a_replica_id_that_cannot_be_written_into_a_cookie_is_refused_at_start() -> None:
    for replica in ("a.b", "", "a;b", "x" * 65):
        with pytest.raises(ValueError, match="replica id"):
            SessionSigner(b"k" * 32, nonce_ttl_seconds=60, token_ttl_seconds=300, replica=replica)


def test_the_signer_refuses_tampered_and_expired_sessions_with_typed_errors() -> None:
    signer = SessionSigner(b"k" * 32, nonce_ttl_seconds=60, token_ttl_seconds=300, replica="r1")
    session, cookie = signer.new_challenge(now=1000)
    signed, _, mac = cookie.rpartition(".")
    prefix, _expires, nonce, replica = signed.split(".")

    with pytest.raises(SessionMissingError, match="not one this service issued"):
        signer.read_challenge(f"{prefix}.999999.{nonce}.{replica}.{mac}")
    read = signer.read_challenge(cookie)
    assert read == session
    with pytest.raises(NonceExpiredError):
        signer.check_fresh(read, now=1060)

    attested = AttestedSession(
        PodRef("shop", "p-1", "u-1"), "ec", "h", TeeKeyPair.generate().public_jwk(), 1300
    )
    token = signer.issue_token(attested, now=1000)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    longer = _b64url(json.dumps(claims | {"exp": 999999}, separators=(",", ":")).encode())

    assert claims["exp"] == 1300  # what a stock client reads
    assert signer.read_token(token, now=1299) == attested
    with pytest.raises(AttestationExpiredError):
        signer.read_token(token, now=1300)
    with pytest.raises(SessionMissingError, match="not one this service issued"):
        signer.read_token(f"{header}.{longer}.{signature}", now=1000)
    # Each kind is checked with its own key: neither passes for the other.
    with pytest.raises(SessionMissingError):
        signer.read_token(cookie, now=1000)
    with pytest.raises(SessionMissingError):
        signer.read_challenge(token)


def test_a_token_issued_here_reads_as_one_another_replica_issued() -> None:
    here = SessionSigner(b"k" * 32, nonce_ttl_seconds=60, token_ttl_seconds=300)
    elsewhere = SessionSigner(b"k" * 32, nonce_ttl_seconds=60, token_ttl_seconds=300)
    attested = AttestedSession(
        PodRef("shop", "p-1", "u-1"), "ec", "h", TeeKeyPair.generate().public_jwk(), 1300
    )
    token = here.issue_token(attested, now=1000)
    header, payload, signature = token.split(".")
    # The same claims under the same MAC, with another letter that decodes to the same
    # bytes: not the token issued, so not read as it.
    last = ALPHABET.index(signature[-1])
    same_bytes = f"{header}.{payload}.{signature[:-1]}{ALPHABET[last ^ 1]}"

    # The session kept for the token issued here is the one its claims give elsewhere.
    assert here.read_token(token, now=1000) == elsewhere.read_token(token, now=1000) == attested
    for signer in (here, elsewhere):
        with pytest.raises(AttestationExpiredError):
            signer.read_token(token, now=1300)
        with pytest.raises(SessionMissingError, match="not one this service issued"):
            signer.read_token(same_bytes, now=1000)
    other_key = SessionSigner(b"o" * 32, nonce_ttl_seconds=60, token_ttl_seconds=300)
    with pytest.raises(SessionMissingError, match="not one this service issued"):
        other_key.read_token(token, now=1000)


def test_the_sessions_kept_for_issued_tokens_are_bounded() -> None:
    signer = SessionSigner(b"k" * 32, nonce_ttl_seconds=60, token_ttl_seconds=300)
    key = TeeKeyPair.generate().public_jwk()
    tokens = [
        signer.issue_token(
            AttestedSession(PodRef("shop", f"p-{i}", f"u-{i}"), "ec", "h", key, 1300), now=1000
        )
        for i in range(1200)
    ]

    assert len(signer._issued) <= 512
    # The first ones, no longer kept, still read from their claims.
    assert signer.read_token(tokens[0], now=1000).pod == PodRef("shop", "p-0", "u-0")
    assert signer.read_token(tokens[-1], now=1000).pod == PodRef("shop", "p-1199", "u-1199")


def test_a_challenge_kept_here_reads_as_its_cookie_decodes() -> None:
    here = SessionSigner(b"k" * 32, nonce_ttl_seconds=60, token_ttl_seconds=300, replica="r1")
    # Same key and replica id, nothing kept: every cookie is verified and decoded.
    decoding = SessionSigner(b"k" * 32, nonce_ttl_seconds=60, token_ttl_seconds=300, replica="r1")
    issued = [here.new_challenge(now=1000 + i) for i in range(1100)]

    assert len(here._challenges_issued) <= 1024
    assert not decoding._challenges_issued
    for session, cookie in issued:  # kept ones, and the first ones no longer kept
        assert here.read_challenge(cookie) == decoding.read_challenge(cookie) == session
    # A cookie one character away from one kept is not found, and its MAC refuses it.
    _, cookie = issued[-1]
    signed, _, mac = cookie.rpartition(".")
    last = ALPHABET.index(mac[-1])
    for altered in (f"{signed}.{mac[:-1]}{ALPHABET[last ^ 1]}", cookie[:-1], cookie + "A"):
        with pytest.raises(SessionMissingError, match="not one this service issued"):
            here.read_challenge(altered)
    other_key = SessionSigner(b"o" * 32, nonce_ttl_seconds=60, token_ttl_seconds=300)
    with pytest.raises(SessionMissingError, match="not one this service issued"):
        other_key.read_challenge(cookie)


def test_the_token_claims_the_tee_pubkey_as_its_wire_form() -> None:
    signer = SessionSigner(b"k" * 32, nonce_ttl_seconds=60, token_ttl_seconds=300)
    key = TeeKeyPair.generate("P-384").public_jwk()
    token = signer.issue_token(
        AttestedSession(PodRef("shop", "p", "u"), "ec", "h", key, 1300), 1000
    )

    # The same members in the same order as pydantic's wire form: the same token bytes.
    claimed = signer._tokens.decode(token)["tee-pubkey"]
    assert list(claimed.items()) == list(key.to_wire().items())
    assert set(claimed) == set(TeePubKey.model_fields)  # a field added later fails here


@given(
    key=st.binary(min_size=1, max_size=80),  # keys longer than a SHA-256 block are hashed
    messages=st.lists(st.text(alphabet=st.characters(max_codepoint=127)), min_size=1, max_size=4),
)
def test_the_keyed_mac_is_hmac_sha256_every_time(key: bytes, messages: list[str]) -> None:
    mac = Mac(key)
    for message in messages:  # one after another: each starts again from the key
        assert mac(message) == _b64url(hmac.digest(key, message.encode(), "sha256"))


def test_the_session_keys_are_not_in_reprs() -> None:
    for made in (Hs256Jwt(KEY), ChallengeCookie(KEY)):
        assert KEY.hex() not in repr(made)
        assert repr(KEY) not in repr(made)
