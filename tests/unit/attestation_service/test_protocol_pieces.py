"""The protocol's building blocks: runtime-data hash, JWE, sessions, nonce ledger."""

from __future__ import annotations

import base64
import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from types import SimpleNamespace

import aiohttp
import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.client.exceptions import ApiException

from enclave_runtime.kbs_protocol import (
    JweResponse,
    KbsProtocolError,
    RuntimeData,
    TeeKeyPair,
    TeePubKey,
    decrypt_response,
    encrypt_to_tee_key,
    models,
    report_data_for,
)
from enclave_runtime.kbs_protocol.init_data import (
    InitDataError,
    PodIdentity,
    config_id_for,
    pod_and_config_id,
    pod_init_data,
    pod_of,
)
from enclave_runtime.kbs_protocol.models import InitData
from enclave_runtime.kbs_protocol.runtime_data import canonical_runtime_data
from kubetee.attestation_service.errors import (
    AttestationExpiredError,
    NonceExpiredError,
    NonceReplayedError,
    SessionMissingError,
)
from kubetee.attestation_service.replay import LeaseNonceLedger, MemoryNonceLedger, nonce_id
from kubetee.attestation_service.sessions import AttestedSession, PodRef, SessionSigner

from .conftest import Stack

# The P-256 base point: a valid public key with fixed coordinates.
GX = "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY"
GY = "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU"
KEY = TeePubKey(kty="EC", crv="P-256", alg="ECDH-ES+A256KW", x=GX, y=GY)
POD = PodRef("shop", "payments-1", "uid-1")


def test_runtime_data_is_hashed_in_rfc8785_canonical_form() -> None:
    data = RuntimeData(nonce="bm9uY2U=", tee_pubkey=KEY)

    canonical = canonical_runtime_data(data)

    assert canonical == (
        b'{"additional-evidence":"","nonce":"bm9uY2U=","tee-pubkey":'
        b'{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"'
        + GX.encode()
        + b'","y":"'
        + GY.encode()
        + b'"}}'
    )
    report_data = report_data_for(data)
    assert len(report_data) == 64
    assert report_data[:48] == hashlib.sha384(canonical).digest()
    assert report_data[48:] == bytes(16)


# Any string JSON can carry (no lone surrogates), control characters and quotes included.
_JSON_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


@given(nonce=_JSON_TEXT.filter(bool), additional=_JSON_TEXT)
def test_canonical_runtime_data_is_what_a_general_jcs_writer_makes(
    nonce: str, additional: str
) -> None:
    """The hashed bytes equal RFC 8785's for any nonce and additional evidence, so a
    quote made here verifies at Trustee's KBS and a stock client's quote verifies here."""
    data = RuntimeData(nonce=nonce, tee_pubkey=KEY)

    expected = rfc8785.dumps(
        {"additional-evidence": additional, "nonce": nonce, "tee-pubkey": KEY.to_wire()}
    )

    assert canonical_runtime_data(data, additional) == expected


@pytest.mark.parametrize(
    "other",
    [
        RuntimeData(nonce="b3RoZXI=", tee_pubkey=KEY),
        RuntimeData(nonce="bm9uY2U=", tee_pubkey=TeeKeyPair.generate().public_jwk()),
    ],
)
def test_report_data_changes_with_nonce_and_key(other: RuntimeData) -> None:
    data = RuntimeData(nonce="bm9uY2U=", tee_pubkey=KEY)
    assert report_data_for(other) != report_data_for(data)
    assert report_data_for(data, "x") != report_data_for(data)


def test_runtime_data_parses_from_the_wire_names() -> None:
    wire = {"nonce": "n", "tee-pubkey": KEY.to_wire()}
    assert RuntimeData.model_validate(wire).tee_pubkey == KEY
    with pytest.raises(ValueError, match=r"tee_pubkey|tee-pubkey"):
        RuntimeData.model_validate({"nonce": "n", "tee-pubkey": {**KEY.to_wire(), "kty": "RSA"}})


@pytest.mark.parametrize("curve", ["P-256", "P-384"])
def test_jwe_round_trip_to_the_tee_key(curve: str) -> None:
    key = TeeKeyPair.generate(curve)  # type: ignore[arg-type]

    response = encrypt_to_tee_key(b"top secret", key.public_jwk())

    header = json.loads(base64.urlsafe_b64decode(response.protected + "=="))
    assert (header["alg"], header["enc"], header["epk"]["crv"]) == (
        "ECDH-ES+A256KW",
        "A256GCM",
        curve,
    )
    assert b"top secret" not in response.model_dump_json().encode()
    assert decrypt_response(response, key) == b"top secret"


def test_jwe_for_another_key_or_tampered_does_not_decrypt() -> None:
    key = TeeKeyPair.generate()
    response = encrypt_to_tee_key(b"top secret", key.public_jwk())
    tampered = JweResponse(**{**response.to_wire(), "ciphertext": "AAAA" + response.ciphertext[4:]})

    with pytest.raises(KbsProtocolError, match="does not decrypt"):
        decrypt_response(response, TeeKeyPair.generate())
    with pytest.raises(KbsProtocolError, match="does not decrypt"):
        decrypt_response(tampered, key)


@pytest.mark.parametrize(
    ("x", "y"),
    [("eA", "eQ"), (GX, GX), (GX, "A" * 43), ("%%", GY)],
    ids=["short", "off-curve", "zero-y", "not-base64url"],
)
def test_tee_pubkey_off_the_curve_is_refused_when_it_arrives(x: str, y: str) -> None:
    for _ in range(2):  # every time: a refused key is not remembered as checked
        with pytest.raises(ValueError, match=r"tee-pubkey|curve|point"):
            TeePubKey(kty="EC", crv="P-256", alg="ECDH-ES+A256KW", x=x, y=y)


def test_tee_pubkey_point_is_checked_once_and_not_for_a_key_made_here(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tee-pubkey from the wire has its point checked once (then it is known); the public
    half of a TEE key pair made in this process is on its curve by making."""
    checks: list[bytes] = []
    real = ec.EllipticCurvePublicKey.from_encoded_point

    def counted(curve: ec.EllipticCurve, data: bytes) -> ec.EllipticCurvePublicKey:
        checks.append(data)
        return real(curve, data)

    monkeypatch.setattr(ec.EllipticCurvePublicKey, "from_encoded_point", counted)
    own = TeeKeyPair.generate()
    RuntimeData(nonce="bm9uY2U=", tee_pubkey=own.public_jwk())
    assert own.public_jwk().public_key() == own.private_key.public_key()
    assert checks == []

    numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    wire = {
        "kty": "EC",
        "crv": "P-256",
        "alg": "ECDH-ES+A256KW",
        "x": base64.urlsafe_b64encode(numbers.x.to_bytes(32, "big")).rstrip(b"=").decode(),
        "y": base64.urlsafe_b64encode(numbers.y.to_bytes(32, "big")).rstrip(b"=").decode(),
    }
    for _ in range(3):
        assert TeePubKey.model_validate(wire).public_key().public_numbers() == numbers
    assert checks == [b"\x04" + numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")]


def test_the_known_points_table_is_bounded_and_forgets_the_oldest_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(models, "_known_points", OrderedDict())
    monkeypatch.setattr(models, "_KNOWN_POINTS_KEPT", 3)
    keys = [TeeKeyPair.generate() for _ in range(5)]
    for key in keys:
        models.known_on_curve(key.public_jwk(), key.private_key.public_key())

    kept = [(jwk.crv, jwk.x, jwk.y) for jwk in (key.public_jwk() for key in keys[2:])]
    assert list(models._known_points) == kept
    # A forgotten point is checked again (and known again) when it comes back.
    forgotten = keys[0].public_jwk()
    assert TeePubKey.model_validate(forgotten.to_wire()).public_key() == (
        keys[0].private_key.public_key()
    )
    assert list(models._known_points)[-1] == (forgotten.crv, forgotten.x, forgotten.y)
    assert len(models._known_points) == 3


def test_resource_jwe_header_survives_kbs_types_reserialization() -> None:
    """kbs-types re-serializes the parsed header (alg, enc, then sorted members) to get
    the GCM AAD: the bytes sent must be exactly those."""
    response = encrypt_to_tee_key(b"x", KEY)
    raw = base64.urlsafe_b64decode(response.protected + "==")
    header = json.loads(raw)
    others = {k: v for k, v in sorted(header.items()) if k not in {"alg", "enc"}}
    reserialized = json.dumps(
        {"alg": header["alg"], "enc": header["enc"], **others},
        separators=(",", ":"),
        sort_keys=False,
    )
    epk_sorted = json.dumps(header["epk"], separators=(",", ":"), sort_keys=True)
    assert raw == reserialized.encode()
    assert epk_sorted in raw.decode()


def test_key_pair_repr_hides_the_private_key() -> None:
    key = TeeKeyPair.generate()
    d = key.private_key.private_numbers().private_value
    text = repr(key)
    assert text == "TeeKeyPair(crv='P-256')"
    for form in (str(d), f"{d:x}", base64.urlsafe_b64encode(d.to_bytes(32, "big")).decode()[:20]):
        assert form not in text


def signer(master: bytes = b"k" * 32) -> SessionSigner:
    return SessionSigner(master, nonce_ttl_seconds=60, token_ttl_seconds=300)


def test_challenge_round_trip_and_expiry() -> None:
    session, cookie = signer().new_challenge(now=1000)

    read = signer().read_challenge(cookie)

    assert (read.nonce, read.expires_at) == (session.nonce, 1060)
    assert len(base64.b64decode(read.nonce)) == 32
    signer().check_fresh(read, now=1059)
    with pytest.raises(NonceExpiredError):
        signer().check_fresh(read, now=1060)


def test_nonces_are_fresh() -> None:
    nonces = {signer().new_challenge(now=1000)[0].nonce for _ in range(50)}
    assert len(nonces) == 50


@pytest.mark.parametrize(
    "cookie",
    [None, "", "not-a-jwt", signer(b"o" * 32).new_challenge(now=1000)[1]],
)
def test_missing_or_foreign_challenge_is_refused(cookie: str | None) -> None:
    with pytest.raises(SessionMissingError):
        signer().read_challenge(cookie)


def test_challenge_and_attested_tokens_are_not_interchangeable() -> None:
    _, challenge = signer().new_challenge(now=1000)
    attested = AttestedSession(POD, "payments", "p0", KEY, expires_at=1300)
    token = signer().issue_token(attested, now=1000)

    assert signer().read_token(token, now=1299) == attested
    with pytest.raises(AttestationExpiredError):
        signer().read_token(token, now=1300)
    with pytest.raises(SessionMissingError):
        signer().read_token(challenge, now=1000)
    with pytest.raises(SessionMissingError):
        signer().read_challenge(token)


def test_short_session_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        signer(b"short")


async def test_nonce_ledger_refuses_a_second_claim_and_forgets_expired_ones() -> None:
    ledger = MemoryNonceLedger()
    await ledger.record("n1", expires_at=100, token=None)
    await ledger.record("n2", expires_at=200, token="t2")

    with pytest.raises(NonceReplayedError):
        await ledger.record("n1", expires_at=100, token="t1")
    assert (await ledger.attested_token("n1"), await ledger.attested_token("n2")) == (None, "t2")
    assert ledger.collect_expired(now=150) == 1
    assert await ledger.attested_token("n2") == "t2"
    assert nonce_id("n1") != nonce_id("n2")
    assert len(nonce_id("n1")) == 40


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"{not json", "malformed Request"),
        (b'{"version": "0.1.0", "tee": "sgx", "extra-params": ""}', "version '0.1.0'"),
        (b'{"version": "0.4.0", "tee": "tdx", "extra-params": ""}', "TEE 'tdx'"),
        (
            b'{"version": "0.4.0", "tee": "sgx", '
            b'"extra-params": {"supported-hash-algorithms": ["sha512"]}}',
            "does not offer sha384",
        ),
    ],
)
async def test_bad_auth_requests_get_problem_details(
    stack: Stack, body: bytes, detail: str
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{stack.base_url}/kbs/v0/auth",
            data=body,
            headers={"Content-Type": "application/json"},
            ssl=stack.client_context(),
        ) as response,
    ):
        problem = await response.json()
    assert response.status == 400
    assert problem["type"] == "https://github.com/confidential-containers/kbs/errors/SerdeError"
    assert problem["reason"] == "BadRequest"
    assert detail in problem["detail"]


async def test_malformed_evidence_is_a_bad_request(stack: Stack) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(
            f"{stack.base_url}/kbs/v0/auth",
            json={
                "version": "0.4.0",
                "tee": "sgx",
                "extra-params": "",
            },
            ssl=stack.client_context(),
        ) as response:
            nonce = (await response.json())["nonce"]
        async with http.post(
            f"{stack.base_url}/kbs/v0/attest",
            json={
                "runtime-data": {
                    "nonce": nonce,
                    "tee-pubkey": TeeKeyPair.generate().public_jwk().to_wire(),
                },
                "init-data": {"format": "toml", "body": "x"},
                "tee-evidence": {"primary_evidence": {"quote": "%%%"}, "additional_evidence": ""},
            },
            ssl=stack.client_context(),
        ) as response:
            problem = await response.json()
    assert response.status == 400
    assert "primary_evidence" in problem["detail"]


class _FakeLeases:
    """CoordinationV1Api's create/read semantics: AlreadyExists (409) and NotFound (404)."""

    def __init__(self) -> None:
        self.leases: dict[str, dict] = {}

    def create_namespaced_lease(self, namespace: str, body: dict) -> None:
        name = body["metadata"]["name"]
        if name in self.leases:
            raise ApiException(status=409, reason="AlreadyExists")
        self.leases[name] = body

    def read_namespaced_lease(self, name: str, namespace: str) -> object:
        if name not in self.leases:
            raise ApiException(status=404, reason="NotFound")
        metadata = self.leases[name]["metadata"]
        return SimpleNamespace(metadata=SimpleNamespace(annotations=metadata["annotations"]))


async def test_lease_ledger_keeps_the_outcome_and_refuses_replays() -> None:
    api = _FakeLeases()
    ledger = LeaseNonceLedger(api, "kbs", "replica-a")
    await ledger.record("n1", expires_at=2_000_000_000, token="t1")
    await ledger.record("n2", expires_at=2_000_000_000, token=None)

    with pytest.raises(NonceReplayedError):
        await ledger.record("n1", expires_at=2_000_000_000, token="other")
    assert await ledger.attested_token("n1") == "t1"
    assert await ledger.attested_token("n2") is None
    assert await ledger.attested_token("never-used") is None
    assert all(name.startswith("kbs-nonce-") for name in api.leases)


@pytest.mark.parametrize(
    "body",
    [
        None,  # the runtime's own init-data
        'version = "0.1.0"\nalgorithm = "sha256"\n[data]\n"kubetee.io/namespace" = "x"\n',
        'version = "0.1.0"\nalgorithm = "md5"\n',
        "not toml [",
    ],
    ids=["valid", "no-pod", "bad-algorithm", "not-toml"],
)
def test_one_read_of_init_data_answers_as_the_two_separate_reads(body: str | None) -> None:
    init_data = pod_init_data(PodIdentity("shop", "p-1", "u-1"))
    if body is not None:
        init_data = InitData(format="toml", body=body)

    def outcome(read: Callable[[], object]) -> object:
        try:
            return read()
        except InitDataError as error:
            return f"refused: {error}"

    together = outcome(lambda: pod_and_config_id(init_data))
    apart = outcome(lambda: (pod_of(init_data), config_id_for(init_data)))
    assert together == apart
    if body is None:
        assert together == (PodIdentity("shop", "p-1", "u-1"), config_id_for(init_data))


def test_kept_readings_of_init_data_answer_as_fresh_ones() -> None:
    pod = PodIdentity("shop", "p-1", "u-1")
    valid = pod_init_data(pod)
    padded = InitData(format="toml", body=valid.body + "#" * 2000 + "\n")  # too big to keep
    for init_data in (valid, padded, valid, padded):
        digest = hashlib.sha384(init_data.body.encode()).digest()
        assert pod_and_config_id(init_data) == (pod, digest + bytes(16))
        assert config_id_for(init_data) == digest + bytes(16)
    # A refusal is not kept as an answer: the same document is refused every time.
    no_pod = InitData(format="toml", body='version = "0.1.0"\nalgorithm = "sha384"\n')
    for _ in range(2):
        with pytest.raises(InitDataError, match=r"no \[data\] table"):
            pod_and_config_id(no_pod)


def test_a_cookie_saying_it_is_a_challenge_is_still_verified_before_use() -> None:
    ours = SessionSigner(b"k" * 32, nonce_ttl_seconds=60, token_ttl_seconds=300)
    forger = SessionSigner(b"f" * 32, nonce_ttl_seconds=60, token_ttl_seconds=300)
    _, forged = forger.new_challenge(1000)
    _, genuine = ours.new_challenge(1000)
    token = ours.issue_token(
        AttestedSession(
            pod=PodRef("shop", "p-1", "u-1"),
            enclave_container="ec",
            policy_hash="h",
            tee_pubkey=TeeKeyPair.generate().public_jwk(),
            expires_at=2000,
        ),
        1000,
    )
    assert ours.is_challenge(genuine)
    assert ours.is_challenge(forged)  # says so: which key to check it with ...
    with pytest.raises(SessionMissingError, match="not one this service issued"):
        ours.read_challenge(forged)  # ... and that check refuses it
    assert not ours.is_challenge(token)
    for garbage in ("", "a.b", "a.!!!.c", "x" * 9000, "a." + "e30" + ".c"):
        assert not ours.is_challenge(garbage)
