"""SIGSTRUCT: the layout of Intel SDM Table 37-19, the signature, Q1/Q2, EINIT's checks."""

from __future__ import annotations

import datetime
import hashlib
import itertools
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from enclave_runtime.sgx.enclave import EnclaveSigner, mrsigner_of
from enclave_runtime.sgx.sigstruct import (
    FIELDS,
    SIGSTRUCT_SIZE,
    Sigstruct,
    SigstructError,
    einit,
    sign_sigstruct,
)

MEASUREMENT = hashlib.sha256(b"an enclave").digest()


@pytest.fixture(scope="module")
def signer() -> EnclaveSigner:
    return EnclaveSigner.generate()


@pytest.fixture(scope="module")
def raw(signer: EnclaveSigner) -> bytes:
    return sign_sigstruct(
        signer,
        MEASUREMENT,
        isv_prod_id=0x1234,
        isv_svn=0x0506,
        debug=False,
        date=datetime.date(2026, 11, 30),
    )


def test_layout_matches_the_sdm_offsets_and_sizes() -> None:
    expected = {
        "HEADER": (0, 16),
        "VENDOR": (16, 4),
        "DATE": (20, 4),
        "HEADER2": (24, 16),
        "SWDEFINED": (40, 4),
        "MODULUS": (128, 384),
        "EXPONENT": (512, 4),
        "SIGNATURE": (516, 384),
        "MISCSELECT": (900, 4),
        "MISCMASK": (904, 4),
        "ATTRIBUTES": (928, 16),
        "ATTRIBUTEMASK": (944, 16),
        "ENCLAVEHASH": (960, 32),
        "ISVPRODID": (1024, 2),
        "ISVSVN": (1026, 2),
        "Q1": (1040, 384),
        "Q2": (1424, 384),
    }
    for name, (offset, size) in expected.items():
        assert (FIELDS[name].offset, FIELDS[name].size) == (offset, size), name
    ordered = sorted(FIELDS.values(), key=lambda f: f.offset)
    for before, after in itertools.pairwise(ordered):
        assert before.offset + before.size == after.offset  # no gap, no overlap
    assert ordered[-1].offset + ordered[-1].size == SIGSTRUCT_SIZE == 1808


def test_fields_hold_the_values_sgx_defines(raw: bytes, signer: EnclaveSigner) -> None:
    assert len(raw) == SIGSTRUCT_SIZE
    assert raw[0:16] == bytes.fromhex("06000000E10000000000010000000000")
    assert raw[24:40] == bytes.fromhex("01010000600000006000000001000000")
    assert raw[20:24] == bytes.fromhex("30112620")  # 0x20261130, BCD, little-endian
    assert int.from_bytes(raw[512:516], "little") == 3
    modulus = signer.public_key.public_numbers().n
    assert raw[128:512] == modulus.to_bytes(384, "little")
    assert raw[960:992] == MEASUREMENT
    assert raw[1024:1026] == b"\x34\x12"
    assert raw[1026:1028] == b"\x06\x05"
    flags = int.from_bytes(raw[928:936], "little")
    assert flags & 0b110 == 0b100  # MODE64BIT set, DEBUG clear
    assert raw[44:128] == bytes(84)  # reserved


def test_signature_is_pkcs1_sha256_over_the_two_signed_regions(
    raw: bytes, signer: EnclaveSigner
) -> None:
    signature = int.from_bytes(raw[516:900], "little").to_bytes(384, "big")
    # Checked with cryptography directly, not with the module's own verifier.
    signer.public_key.verify(
        signature, raw[0:128] + raw[900:1028], padding.PKCS1v15(), hashes.SHA256()
    )
    s = int.from_bytes(raw[516:900], "little")
    n = int.from_bytes(raw[128:512], "little")
    q1 = int.from_bytes(raw[1040:1424], "little")
    q2 = int.from_bytes(raw[1424:1808], "little")
    assert q1 == s**2 // n
    assert q2 == (s**3 - q1 * s * n) // n


def test_parse_and_mrsigner(raw: bytes, signer: EnclaveSigner) -> None:
    parsed = Sigstruct.parse(raw)
    parsed.verify()
    assert parsed.enclave_hash == MEASUREMENT
    assert (parsed.isv_prod_id, parsed.isv_svn, parsed.debug) == (0x1234, 0x0506, False)
    assert parsed.date == datetime.date(2026, 11, 30)
    assert parsed.mrsigner == hashlib.sha256(raw[128:512]).digest()
    assert parsed.mrsigner == mrsigner_of(signer.public_key) == signer.mrsigner


@pytest.mark.parametrize(
    "offset",
    [0, 20, 130, 512, 600, 900, 930, 960, 991, 1024, 1027, 1100, 1500],
    ids=lambda o: f"byte{o}",
)
def test_any_changed_byte_of_a_checked_field_fails_verification(raw: bytes, offset: int) -> None:
    tampered = bytearray(raw)
    tampered[offset] ^= 0x01
    with pytest.raises(SigstructError):
        Sigstruct.parse(bytes(tampered)).verify()


def test_einit_refuses_a_measurement_that_is_not_the_signed_one(raw: bytes) -> None:
    assert einit(raw, MEASUREMENT).enclave_hash == MEASUREMENT
    with pytest.raises(SigstructError, match="measurement mismatch"):
        einit(raw, hashlib.sha256(b"another enclave").digest())


def test_resigning_with_another_key_verifies_but_changes_mrsigner(
    raw: bytes, signer: EnclaveSigner
) -> None:
    other = EnclaveSigner.generate()
    forged = sign_sigstruct(other, MEASUREMENT, isv_prod_id=0x1234, isv_svn=0x0506, debug=False)
    parsed = einit(forged, MEASUREMENT)
    assert parsed.mrsigner == other.mrsigner != signer.mrsigner


def test_debug_is_an_attribute_of_the_signature(signer: EnclaveSigner) -> None:
    debug = sign_sigstruct(signer, MEASUREMENT, isv_prod_id=1, isv_svn=1, debug=True)
    assert Sigstruct.parse(debug).debug
    assert int.from_bytes(debug[928:936], "little") & 0b10


def test_malformed_sigstructs_are_refused_clearly(raw: bytes) -> None:
    with pytest.raises(SigstructError, match="1808 bytes"):
        Sigstruct.parse(raw[:-1])
    with pytest.raises(SigstructError, match="HEADER"):
        Sigstruct.parse(bytes(16) + raw[16:])


def test_keys_other_than_rsa3072_exponent3_are_refused() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    with pytest.raises(ValueError, match="exponent 3"):
        EnclaveSigner(key)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_an_openssl_key_signs(tmp_path: Path) -> None:
    key = tmp_path / "author.pem"
    subprocess.run(["openssl", "genrsa", "-3", "-out", str(key), "3072"], check=True)
    signer = EnclaveSigner.from_pem(key.read_bytes())
    raw = sign_sigstruct(signer, MEASUREMENT, isv_prod_id=0, isv_svn=0, debug=False)
    assert einit(raw, MEASUREMENT).mrsigner == signer.mrsigner
