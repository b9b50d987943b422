"""Enclave identity as SGX defines it: MRENCLAVE, MRSIGNER, attributes, product and SVN.

MRENCLAVE is a SHA-256 over a log of what the enclave loads, modelled on the
ECREATE/EADD/EEXTEND records the CPU measures: every file (sorted by path, with its
path and size) and the enclave configuration as canonical JSON (RFC 8785). Any change
to a byte, a name or a setting changes the measurement.

MRSIGNER is the SHA-256 of the signer's RSA-3072 modulus in little-endian byte order,
as the CPU computes it from the SIGSTRUCT; SGX requires the public exponent 3.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from typing import Any, cast

import rfc8785
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from enclave_runtime.sgx.quote import (
    ATTRIBUTE_DEBUG,
    ATTRIBUTE_INIT,
    ATTRIBUTE_MODE64BIT,
    ReportBody,
)

SIGNER_KEY_BITS = 3072
SIGNER_PUBLIC_EXPONENT = 3
# XFRM: x87 and SSE state, the minimum every enclave enables.
DEFAULT_XFRM = 0x03
_RECORD = struct.Struct("<8sQQ")


def measure_enclave(files: Mapping[str, bytes], config: Mapping[str, object]) -> bytes:
    """The MRENCLAVE of an enclave loading ``files`` (path -> content) with ``config``.

    Deterministic: the same files and configuration always give the same 32 bytes,
    whatever the order of the mapping.
    """
    try:
        canonical_config = rfc8785.dumps(cast(dict[str, Any], dict(config)))
    except (TypeError, ValueError, rfc8785.CanonicalizationError) as error:
        raise ValueError(f"enclave configuration is not canonical JSON: {error}") from None
    measurement = hashlib.sha256()
    measurement.update(_RECORD.pack(b"ECREATE", len(files), len(canonical_config)))
    for path in sorted(files, key=lambda p: p.encode()):
        name = path.encode()
        content = files[path]
        measurement.update(_RECORD.pack(b"EADD", len(name), len(content)))
        measurement.update(name)
        measurement.update(b"EEXTEND\0")
        measurement.update(content)
    measurement.update(_RECORD.pack(b"CONFIG", len(canonical_config), 0))
    measurement.update(canonical_config)
    return measurement.digest()


def mrsigner_of(public_key: rsa.RSAPublicKey) -> bytes:
    """MRSIGNER: SHA-256 of the RSA modulus, little-endian, as in the SIGSTRUCT."""
    modulus = public_key.public_numbers().n
    return hashlib.sha256(modulus.to_bytes(public_key.key_size // 8, "little")).digest()


class EnclaveSigner:
    """The RSA-3072 key (exponent 3) with which an ISV signs its enclaves."""

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        numbers = private_key.public_key().public_numbers()
        if private_key.key_size != SIGNER_KEY_BITS or numbers.e != SIGNER_PUBLIC_EXPONENT:
            raise ValueError("an SGX enclave signing key is RSA-3072 with public exponent 3")
        self._private_key = private_key
        self.mrsigner: bytes = mrsigner_of(private_key.public_key())

    @classmethod
    def generate(cls) -> EnclaveSigner:
        return cls(
            rsa.generate_private_key(
                public_exponent=SIGNER_PUBLIC_EXPONENT, key_size=SIGNER_KEY_BITS
            )
        )

    @classmethod
    def from_pem(cls, pem: bytes) -> EnclaveSigner:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError("an enclave signing key must be an RSA private key")
        return cls(key)

    def private_pem(self) -> bytes:
        return self._private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self._private_key.public_key()

    def sign_raw(self, data: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 over SHA-256 of ``data``, big-endian (the SIGSTRUCT's scheme)."""
        return self._private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def sign(self, mrenclave: bytes, *, isv_prod_id: int, isv_svn: int, debug: bool) -> bytes:
        """Sign an enclave's identity, as the SIGSTRUCT does, for the launch check."""
        return self._private_key.sign(
            _sigstruct_body(mrenclave, isv_prod_id=isv_prod_id, isv_svn=isv_svn, debug=debug),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )


def verify_enclave_signature(
    public_key: rsa.RSAPublicKey,
    signature: bytes,
    mrenclave: bytes,
    *,
    isv_prod_id: int,
    isv_svn: int,
    debug: bool,
) -> bytes:
    """Check an enclave signature like EINIT does; return the signer's MRSIGNER.

    Raises ``cryptography.exceptions.InvalidSignature`` when it does not verify.
    """
    public_key.verify(
        signature,
        _sigstruct_body(mrenclave, isv_prod_id=isv_prod_id, isv_svn=isv_svn, debug=debug),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )
    return mrsigner_of(public_key)


def _sigstruct_body(mrenclave: bytes, *, isv_prod_id: int, isv_svn: int, debug: bool) -> bytes:
    return b"SIGSTRUCT" + mrenclave + struct.pack("<HH?", isv_prod_id, isv_svn, debug)


def make_report_body(
    mrenclave: bytes,
    mrsigner: bytes,
    *,
    debug: bool,
    isv_prod_id: int,
    isv_svn: int,
    report_data: bytes,
    config_id: bytes = bytes(64),
) -> ReportBody:
    """The report body of an enclave; ``report_data`` (at most 64 bytes) is zero-padded;
    ``config_id``: the CONFIGID the host set at launch (none: zeros).

    The platform fills in its CPUSVN when it quotes the body, as EREPORT does.
    """
    if len(mrenclave) != 32 or len(mrsigner) != 32:
        raise ValueError("MRENCLAVE and MRSIGNER are 32 bytes each")
    if len(config_id) != 64:
        raise ValueError(f"CONFIGID is 64 bytes, got {len(config_id)}")
    if len(report_data) > 64:
        raise ValueError(f"report data holds at most 64 bytes, got {len(report_data)}")
    if not (0 <= isv_prod_id <= 0xFFFF and 0 <= isv_svn <= 0xFFFF):
        raise ValueError("ISV product id and SVN are 16-bit unsigned integers")
    flags = ATTRIBUTE_INIT | ATTRIBUTE_MODE64BIT | (ATTRIBUTE_DEBUG if debug else 0)
    return ReportBody(
        attributes=flags.to_bytes(8, "little") + DEFAULT_XFRM.to_bytes(8, "little"),
        mrenclave=bytes(mrenclave),
        mrsigner=bytes(mrsigner),
        isv_prod_id=isv_prod_id,
        isv_svn=isv_svn,
        report_data=bytes(report_data).ljust(64, b"\0"),
        config_id=bytes(config_id),
    )
