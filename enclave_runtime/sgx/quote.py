"""The Intel SGX ECDSA quote, version 3: parsing and serialization, byte for byte.

Layout (little-endian integers), as in Intel's ``sgx_quote_3.h``::

    header             48   version=3, attestation key type=2 (ECDSA P-256), reserved=0,
                            QE SVN, PCE SVN, QE vendor id, user data
    ISV report body   384   the attested enclave (signed by the attestation key)
    signature data len  4
    signature data          ISV signature (64, r||s), attestation key (64, x||y),
                            QE report body (384), QE report signature (64),
                            QE auth data (u16 size + bytes),
                            certification data (u16 type=5, u32 size, PEM PCK chain)

Parsing is strict: every length must match exactly, so truncated or padded input is
refused with a ``QuoteFormatError`` whose ``code`` names the defect.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

QUOTE_VERSION = 3
ATTESTATION_KEY_TYPE_ECDSA_P256 = 2
CERTIFICATION_DATA_PCK_CHAIN = 5
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")

HEADER_SIZE = 48
REPORT_BODY_SIZE = 384
# The ISV signature covers the header and the ISV report body.
ISV_SIGNED_SIZE = HEADER_SIZE + REPORT_BODY_SIZE
SIGNATURE_SIZE = 64
ATTESTATION_KEY_SIZE = 64

ATTRIBUTE_INIT = 0x01
ATTRIBUTE_DEBUG = 0x02
ATTRIBUTE_MODE64BIT = 0x04

_HEADER = struct.Struct("<HHIHH16s20s")
_REPORT_BODY = struct.Struct("<16sI12s16s16s32s32s32s32s64sHHH42s16s64s")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_CERT_DATA_HEADER = struct.Struct("<HI")
# Fixed part of the signature data: ISV signature, attestation key, QE report, QE signature.
_SIG_FIXED_SIZE = SIGNATURE_SIZE + ATTESTATION_KEY_SIZE + REPORT_BODY_SIZE + SIGNATURE_SIZE


class QuoteFormatError(ValueError):
    """The bytes are not a well-formed SGX ECDSA v3 quote; ``code`` names the defect."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class ReportBody:
    """An SGX REPORT body (``sgx_report_body_t``): who the enclave is and what it states."""

    cpu_svn: bytes = bytes(16)
    misc_select: int = 0
    attributes: bytes = bytes(16)
    mrenclave: bytes = bytes(32)
    mrsigner: bytes = bytes(32)
    isv_prod_id: int = 0
    isv_svn: int = 0
    report_data: bytes = bytes(64)
    isv_ext_prod_id: bytes = bytes(16)
    config_id: bytes = bytes(64)
    config_svn: int = 0
    isv_family_id: bytes = bytes(16)
    reserved1: bytes = field(default=bytes(12), repr=False)
    reserved2: bytes = field(default=bytes(32), repr=False)
    reserved3: bytes = field(default=bytes(32), repr=False)
    reserved4: bytes = field(default=bytes(42), repr=False)

    @property
    def flags(self) -> int:
        """The attribute flags (first 8 bytes of ``attributes``)."""
        return int.from_bytes(self.attributes[:8], "little")

    @property
    def debug(self) -> bool:
        """True when the enclave was launched in DEBUG mode (its memory is readable)."""
        return bool(self.attributes[0] & ATTRIBUTE_DEBUG)

    def to_bytes(self) -> bytes:
        try:
            return _REPORT_BODY.pack(
                self.cpu_svn,
                self.misc_select,
                self.reserved1,
                self.isv_ext_prod_id,
                self.attributes,
                self.mrenclave,
                self.reserved2,
                self.mrsigner,
                self.reserved3,
                self.config_id,
                self.isv_prod_id,
                self.isv_svn,
                self.config_svn,
                self.reserved4,
                self.isv_family_id,
                self.report_data,
            )
        except struct.error as error:
            raise QuoteFormatError("REPORT_BODY_INVALID", f"report body field: {error}") from None

    @classmethod
    def from_bytes(cls, data: bytes) -> ReportBody:
        if len(data) != REPORT_BODY_SIZE:
            raise QuoteFormatError(
                "REPORT_BODY_INVALID",
                f"a report body is {REPORT_BODY_SIZE} bytes, got {len(data)}",
            )
        (
            cpu_svn,
            misc_select,
            reserved1,
            isv_ext_prod_id,
            attributes,
            mrenclave,
            reserved2,
            mrsigner,
            reserved3,
            config_id,
            isv_prod_id,
            isv_svn,
            config_svn,
            reserved4,
            isv_family_id,
            report_data,
        ) = _REPORT_BODY.unpack(data)
        return cls(
            cpu_svn=cpu_svn,
            misc_select=misc_select,
            attributes=attributes,
            mrenclave=mrenclave,
            mrsigner=mrsigner,
            isv_prod_id=isv_prod_id,
            isv_svn=isv_svn,
            report_data=report_data,
            isv_ext_prod_id=isv_ext_prod_id,
            config_id=config_id,
            config_svn=config_svn,
            isv_family_id=isv_family_id,
            reserved1=reserved1,
            reserved2=reserved2,
            reserved3=reserved3,
            reserved4=reserved4,
        )


@dataclass(frozen=True, slots=True)
class QuoteHeader:
    """The quote header: format, attestation key type and the Quoting Enclave's versions."""

    qe_svn: int
    pce_svn: int
    user_data: bytes = bytes(20)
    qe_vendor_id: bytes = INTEL_QE_VENDOR_ID
    version: int = QUOTE_VERSION
    attestation_key_type: int = ATTESTATION_KEY_TYPE_ECDSA_P256
    reserved: int = 0

    def to_bytes(self) -> bytes:
        try:
            return _HEADER.pack(
                self.version,
                self.attestation_key_type,
                self.reserved,
                self.qe_svn,
                self.pce_svn,
                self.qe_vendor_id,
                self.user_data,
            )
        except struct.error as error:
            raise QuoteFormatError("QUOTE_HEADER_INVALID", f"quote header field: {error}") from None


@dataclass(frozen=True, slots=True)
class Quote:
    """A parsed SGX ECDSA quote v3 with certification data type 5 (PCK certificate chain)."""

    header: QuoteHeader
    report_body: ReportBody
    signature: bytes
    attestation_key: bytes
    qe_report: ReportBody
    qe_report_signature: bytes
    qe_auth_data: bytes
    certification_data: bytes
    certification_data_type: int = CERTIFICATION_DATA_PCK_CHAIN

    def signed_data(self) -> bytes:
        """The bytes the ISV signature covers: header and ISV report body."""
        return self.header.to_bytes() + self.report_body.to_bytes()

    def to_bytes(self) -> bytes:
        for name, value, size in (
            ("signature", self.signature, SIGNATURE_SIZE),
            ("attestation key", self.attestation_key, ATTESTATION_KEY_SIZE),
            ("QE report signature", self.qe_report_signature, SIGNATURE_SIZE),
        ):
            if len(value) != size:
                raise QuoteFormatError("QUOTE_FIELD_INVALID", f"{name} must be {size} bytes")
        if len(self.qe_auth_data) > 0xFFFF:
            raise QuoteFormatError("QUOTE_FIELD_INVALID", "QE auth data exceeds 65535 bytes")
        signature_data = b"".join(
            (
                self.signature,
                self.attestation_key,
                self.qe_report.to_bytes(),
                self.qe_report_signature,
                _U16.pack(len(self.qe_auth_data)),
                self.qe_auth_data,
                _CERT_DATA_HEADER.pack(self.certification_data_type, len(self.certification_data)),
                self.certification_data,
            )
        )
        return self.signed_data() + _U32.pack(len(signature_data)) + signature_data


def _take(data: bytes, offset: int, size: int, what: str) -> bytes:
    end = offset + size
    if end > len(data):
        raise QuoteFormatError(
            "QUOTE_LENGTH_MISMATCH",
            f"{what} needs {size} bytes at offset {offset} but the signature data "
            f"ends at {len(data)}",
        )
    return data[offset:end]


def parse_quote(data: bytes) -> Quote:
    """Parse an SGX ECDSA quote v3; raise ``QuoteFormatError`` on any deviation."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise QuoteFormatError("QUOTE_NOT_BYTES", f"a quote is bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) < ISV_SIGNED_SIZE + 4:
        raise QuoteFormatError(
            "QUOTE_TRUNCATED",
            f"a quote has at least {ISV_SIGNED_SIZE + 4} bytes before its signature data, "
            f"got {len(data)}",
        )
    version, key_type, reserved, qe_svn, pce_svn, vendor_id, user_data = _HEADER.unpack_from(data)
    if version != QUOTE_VERSION:
        raise QuoteFormatError(
            "QUOTE_UNSUPPORTED_VERSION", f"quote version {version} is not supported (only 3)"
        )
    if key_type != ATTESTATION_KEY_TYPE_ECDSA_P256:
        raise QuoteFormatError(
            "QUOTE_UNSUPPORTED_KEY_TYPE",
            f"attestation key type {key_type} is not supported (only 2, ECDSA-256 P-256)",
        )
    if reserved != 0:
        raise QuoteFormatError(
            "QUOTE_UNSUPPORTED_TEE_TYPE",
            f"header field after the key type is {reserved:#x}; an SGX v3 quote has 0",
        )
    (signature_data_size,) = _U32.unpack_from(data, ISV_SIGNED_SIZE)
    expected = ISV_SIGNED_SIZE + 4 + signature_data_size
    if len(data) < expected:
        raise QuoteFormatError(
            "QUOTE_TRUNCATED",
            f"the quote declares {expected} bytes but has {len(data)}",
        )
    if len(data) > expected:
        raise QuoteFormatError(
            "QUOTE_TRAILING_DATA",
            f"the quote declares {expected} bytes but has {len(data) - expected} more",
        )
    sig = data[ISV_SIGNED_SIZE + 4 :]
    if len(sig) < _SIG_FIXED_SIZE + 2:
        raise QuoteFormatError(
            "QUOTE_LENGTH_MISMATCH",
            f"signature data of {len(sig)} bytes cannot hold the signatures, attestation "
            "key and QE report",
        )
    offset = 0
    isv_signature = sig[offset : offset + SIGNATURE_SIZE]
    offset += SIGNATURE_SIZE
    attestation_key = sig[offset : offset + ATTESTATION_KEY_SIZE]
    offset += ATTESTATION_KEY_SIZE
    qe_report = ReportBody.from_bytes(sig[offset : offset + REPORT_BODY_SIZE])
    offset += REPORT_BODY_SIZE
    qe_report_signature = sig[offset : offset + SIGNATURE_SIZE]
    offset += SIGNATURE_SIZE
    (auth_size,) = _U16.unpack_from(sig, offset)
    offset += 2
    qe_auth_data = _take(sig, offset, auth_size, "QE auth data")
    offset += auth_size
    cert_type, cert_size = _CERT_DATA_HEADER.unpack(
        _take(sig, offset, _CERT_DATA_HEADER.size, "certification data header")
    )
    offset += _CERT_DATA_HEADER.size
    if cert_type != CERTIFICATION_DATA_PCK_CHAIN:
        raise QuoteFormatError(
            "QUOTE_UNSUPPORTED_CERTIFICATION_DATA",
            f"certification data type {cert_type} is not supported (only 5, PCK chain)",
        )
    certification_data = _take(sig, offset, cert_size, "certification data")
    offset += cert_size
    if offset != len(sig):
        raise QuoteFormatError(
            "QUOTE_LENGTH_MISMATCH",
            f"signature data has {len(sig) - offset} bytes after the certification data",
        )
    return Quote(
        header=QuoteHeader(
            version=version,
            attestation_key_type=key_type,
            reserved=reserved,
            qe_svn=qe_svn,
            pce_svn=pce_svn,
            qe_vendor_id=vendor_id,
            user_data=user_data,
        ),
        report_body=ReportBody.from_bytes(data[HEADER_SIZE:ISV_SIGNED_SIZE]),
        signature=isv_signature,
        attestation_key=attestation_key,
        qe_report=qe_report,
        qe_report_signature=qe_report_signature,
        qe_auth_data=qe_auth_data,
        certification_data=certification_data,
        certification_data_type=cert_type,
    )
