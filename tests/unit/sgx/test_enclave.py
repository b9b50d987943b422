"""Enclave identity: MRENCLAVE measurement, MRSIGNER, the enclave signature, report bodies."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import rsa

from enclave_runtime.sgx.enclave import (
    EnclaveSigner,
    make_report_body,
    measure_enclave,
    verify_enclave_signature,
)
from tests.unit.sgx.simulation import simulated_world

FILES = {"bin/app": b"\x7fELF code", "etc/app.conf": b"port=8443\n"}
CONFIG = {"entrypoint": "bin/app", "heapSize": 64}


def test_measurement_is_deterministic_and_independent_of_mapping_order() -> None:
    first = measure_enclave(FILES, CONFIG)
    reordered = measure_enclave(dict(reversed(FILES.items())), dict(reversed(CONFIG.items())))
    assert len(first) == 32
    assert first == reordered


@pytest.mark.parametrize(
    ("files", "config"),
    [
        ({**FILES, "bin/app": b"\x7fELF cod3"}, CONFIG),
        ({"bin/app2": FILES["bin/app"], "etc/app.conf": FILES["etc/app.conf"]}, CONFIG),
        ({**FILES, "extra": b""}, CONFIG),
        (FILES, {**CONFIG, "heapSize": 65}),
        # Moving bytes from one file to the next must not collide.
        ({"bin/app": b"\x7fELF codeport=8443\n", "etc/app.conf": b""}, CONFIG),
    ],
)
def test_any_change_changes_the_measurement(
    files: dict[str, bytes], config: dict[str, object]
) -> None:
    assert measure_enclave(files, config) != measure_enclave(FILES, CONFIG)


def test_configuration_must_be_json() -> None:
    with pytest.raises(ValueError, match="canonical JSON"):
        measure_enclave(FILES, {"when": object()})


def test_mrsigner_is_sha256_of_the_little_endian_modulus() -> None:
    signer = simulated_world().signer
    modulus = signer.public_key.public_numbers().n
    assert signer.mrsigner == hashlib.sha256(modulus.to_bytes(384, "little")).digest()
    assert EnclaveSigner.from_pem(signer.private_pem()).mrsigner == signer.mrsigner


def test_signer_must_be_rsa_3072_with_exponent_3() -> None:
    with pytest.raises(ValueError, match="exponent 3"):
        EnclaveSigner(rsa.generate_private_key(public_exponent=65537, key_size=3072))


def test_enclave_signature_verifies_like_einit() -> None:
    signer = simulated_world().signer
    mrenclave = measure_enclave(FILES, CONFIG)
    signature = signer.sign(mrenclave, isv_prod_id=1, isv_svn=2, debug=False)
    assert (
        verify_enclave_signature(
            signer.public_key, signature, mrenclave, isv_prod_id=1, isv_svn=2, debug=False
        )
        == signer.mrsigner
    )
    with pytest.raises(InvalidSignature):
        verify_enclave_signature(
            signer.public_key, signature, mrenclave, isv_prod_id=1, isv_svn=3, debug=False
        )


def test_report_body_carries_identity_and_debug_flag() -> None:
    body = make_report_body(
        b"\x11" * 32, b"\x22" * 32, debug=True, isv_prod_id=5, isv_svn=6, report_data=b"abc"
    )
    assert body.debug
    assert body.flags & 0x05 == 0x05  # INIT and MODE64BIT
    assert body.report_data == b"abc" + bytes(61)
    assert (body.mrenclave, body.mrsigner, body.isv_prod_id, body.isv_svn) == (
        b"\x11" * 32,
        b"\x22" * 32,
        5,
        6,
    )
    assert not make_report_body(
        b"\x11" * 32, b"\x22" * 32, debug=False, isv_prod_id=5, isv_svn=6, report_data=b""
    ).debug


def test_a_report_body_made_with_its_config_id_is_the_one_replaced_after() -> None:
    config_id = bytes(range(64))
    arguments: dict[str, Any] = {
        "debug": False,
        "isv_prod_id": 1,
        "isv_svn": 2,
        "report_data": b"data",
    }
    made = make_report_body(b"\x11" * 32, b"\x22" * 32, config_id=config_id, **arguments)
    plain = make_report_body(b"\x11" * 32, b"\x22" * 32, **arguments)

    assert made == replace(plain, config_id=config_id)
    assert made.to_bytes() == replace(plain, config_id=config_id).to_bytes()
    assert plain.config_id == bytes(64)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"report_data": bytes(65)}, "at most 64"),
        ({"config_id": bytes(32)}, "CONFIGID is 64 bytes"),
        ({"isv_svn": 70000}, "16-bit"),
        ({"mrenclave": b"short"}, "32 bytes"),
    ],
)
def test_report_body_limits(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {
        "mrenclave": b"\x11" * 32,
        "mrsigner": b"\x22" * 32,
        "debug": False,
        "isv_prod_id": 1,
        "isv_svn": 1,
        "report_data": b"",
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        make_report_body(**arguments)  # type: ignore[arg-type]
