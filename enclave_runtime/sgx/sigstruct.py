"""SIGSTRUCT: the enclave author's signature over an enclave's identity (Intel SDM 37.14).

The 1808-byte structure EINIT checks before an enclave may run. The author signs two
regions with RSA-3072 (exponent 3, PKCS#1 v1.5 over SHA-256): bytes 0..128 (header,
vendor, date, header2, swdefined) and bytes 900..1028 (miscselect, attributes, the
masks, ENCLAVEHASH, ISVPRODID, ISVSVN). Modulus, signature, Q1 and Q2 are stored
little-endian; Q1 and Q2 let the CPU verify with multiplications only:
``Q1 = floor(S^2 / M)``, ``Q2 = floor((S^3 - Q1*S*M) / M)``.

MRSIGNER is the SHA-256 of the modulus as stored (little-endian). EINIT refuses a
SIGSTRUCT whose signature does not verify or whose ENCLAVEHASH differs from the MRENCLAVE
the CPU measured; :func:`einit` does both checks.
"""

from __future__ import annotations

import datetime
import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from enclave_runtime.sgx.enclave import (
    SIGNER_KEY_BITS,
    SIGNER_PUBLIC_EXPONENT,
    EnclaveSigner,
)
from enclave_runtime.sgx.quote import ATTRIBUTE_DEBUG, ATTRIBUTE_INIT, ATTRIBUTE_MODE64BIT

SIGSTRUCT_SIZE = 1808
KEY_BYTES = SIGNER_KEY_BITS // 8
HEADER = bytes.fromhex("06000000E10000000000010000000000")
HEADER2 = bytes.fromhex("01010000600000006000000001000000")
VENDOR_OTHER = 0x0000_0000
VENDOR_INTEL = 0x0000_8086


@dataclass(frozen=True, slots=True)
class Field:
    """One field of the SIGSTRUCT: byte offset and size (Intel SDM Table 37-19)."""

    offset: int
    size: int

    def of(self, raw: bytes) -> bytes:
        return raw[self.offset : self.offset + self.size]


# fmt: off
FIELDS: dict[str, Field] = {
    "HEADER":         Field(0, 16),
    "VENDOR":         Field(16, 4),
    "DATE":           Field(20, 4),
    "HEADER2":        Field(24, 16),
    "SWDEFINED":      Field(40, 4),
    "RESERVED1":      Field(44, 84),
    "MODULUS":        Field(128, 384),
    "EXPONENT":       Field(512, 4),
    "SIGNATURE":      Field(516, 384),
    "MISCSELECT":     Field(900, 4),
    "MISCMASK":       Field(904, 4),
    "RESERVED2":      Field(908, 20),
    "ATTRIBUTES":     Field(928, 16),
    "ATTRIBUTEMASK":  Field(944, 16),
    "ENCLAVEHASH":    Field(960, 32),
    "RESERVED3":      Field(992, 32),
    "ISVPRODID":      Field(1024, 2),
    "ISVSVN":         Field(1026, 2),
    "RESERVED4":      Field(1028, 12),
    "Q1":             Field(1040, 384),
    "Q2":             Field(1424, 384),
}
# fmt: on
# The two signed regions: header part and body part.
SIGNED_HEADER = slice(0, 128)
SIGNED_BODY = slice(900, 1028)
# DEBUG may differ between signature and launch only if the mask says so; INIT and
# MODE64BIT must be set, the rest of the flags clear. XFRM: x87|SSE required.
_FLAGS_MASK = 0xFFFF_FFFF_FFFF_FFFB
_XFRM = 0x03
_XFRM_MASK = 0xFFFF_FFFF_FFFF_FFFB


class SigstructError(ValueError):
    """A SIGSTRUCT that is malformed or does not verify (EINIT: SGX_INVALID_SIGNATURE)."""


@dataclass(frozen=True, slots=True)
class Sigstruct:
    """A parsed SIGSTRUCT (what EINIT reads of it)."""

    raw: bytes
    vendor: int
    date: datetime.date
    modulus: int
    exponent: int
    signature: int
    miscselect: int
    attributes: bytes
    attribute_mask: bytes
    enclave_hash: bytes
    isv_prod_id: int
    isv_svn: int

    @property
    def debug(self) -> bool:
        return bool(int.from_bytes(self.attributes[:8], "little") & ATTRIBUTE_DEBUG)

    @property
    def mrsigner(self) -> bytes:
        """SHA-256 of the modulus as the SIGSTRUCT stores it (little-endian)."""
        return hashlib.sha256(FIELDS["MODULUS"].of(self.raw)).digest()

    @classmethod
    def parse(cls, raw: bytes) -> Sigstruct:
        if len(raw) != SIGSTRUCT_SIZE:
            raise SigstructError(f"a SIGSTRUCT is {SIGSTRUCT_SIZE} bytes, got {len(raw)}")
        if FIELDS["HEADER"].of(raw) != HEADER or FIELDS["HEADER2"].of(raw) != HEADER2:
            raise SigstructError("not a SIGSTRUCT: its HEADER/HEADER2 constants are wrong")

        def number(name: str) -> int:
            return int.from_bytes(FIELDS[name].of(raw), "little")

        return cls(
            raw=bytes(raw),
            vendor=number("VENDOR"),
            date=_decode_date(FIELDS["DATE"].of(raw)),
            modulus=number("MODULUS"),
            exponent=number("EXPONENT"),
            signature=number("SIGNATURE"),
            miscselect=number("MISCSELECT"),
            attributes=FIELDS["ATTRIBUTES"].of(raw),
            attribute_mask=FIELDS["ATTRIBUTEMASK"].of(raw),
            enclave_hash=FIELDS["ENCLAVEHASH"].of(raw),
            isv_prod_id=number("ISVPRODID"),
            isv_svn=number("ISVSVN"),
        )

    def verify(self) -> None:
        """Check the signature with the modulus it carries, as EINIT does.

        Raises :class:`SigstructError` unless the exponent is 3, the key RSA-3072, Q1/Q2
        consistent and the PKCS#1 v1.5 SHA-256 signature valid over the signed regions.
        """
        if self.exponent != SIGNER_PUBLIC_EXPONENT:
            raise SigstructError(f"SIGSTRUCT exponent is {self.exponent}; SGX requires 3")
        if self.modulus.bit_length() != SIGNER_KEY_BITS:
            raise SigstructError("SIGSTRUCT modulus is not a 3072-bit RSA modulus")
        q1, q2 = _quotients(self.signature, self.modulus)
        if q1 != int.from_bytes(FIELDS["Q1"].of(self.raw), "little") or q2 != int.from_bytes(
            FIELDS["Q2"].of(self.raw), "little"
        ):
            raise SigstructError("SIGSTRUCT Q1/Q2 do not match its signature and modulus")
        public_key = rsa.RSAPublicNumbers(self.exponent, self.modulus).public_key()
        try:
            public_key.verify(
                self.signature.to_bytes(KEY_BYTES, "big"),
                signed_bytes(self.raw),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            raise SigstructError(
                "SIGSTRUCT signature does not verify: it was altered after signing"
            ) from None


def signed_bytes(raw: bytes) -> bytes:
    """The 256 bytes the author signs: header part, then body part."""
    return raw[SIGNED_HEADER] + raw[SIGNED_BODY]


def sign_sigstruct(
    signer: EnclaveSigner,
    enclave_hash: bytes,
    *,
    isv_prod_id: int,
    isv_svn: int,
    debug: bool,
    date: datetime.date | None = None,
) -> bytes:
    """A signed SIGSTRUCT for an enclave measuring to ``enclave_hash``."""
    if len(enclave_hash) != 32:
        raise ValueError("ENCLAVEHASH is a 32-byte SHA-256")
    if not (0 <= isv_prod_id <= 0xFFFF and 0 <= isv_svn <= 0xFFFF):
        raise ValueError("ISVPRODID and ISVSVN are 16-bit unsigned integers")
    raw = bytearray(SIGSTRUCT_SIZE)
    day = date or datetime.datetime.now(tz=datetime.UTC).date()
    flags = ATTRIBUTE_INIT | ATTRIBUTE_MODE64BIT | (ATTRIBUTE_DEBUG if debug else 0)
    public = signer.public_key.public_numbers()

    def put(name: str, value: bytes) -> None:
        field = FIELDS[name]
        if len(value) != field.size:
            raise AssertionError(f"{name} is {field.size} bytes")
        raw[field.offset : field.offset + field.size] = value

    put("HEADER", HEADER)
    put("VENDOR", struct.pack("<I", VENDOR_OTHER))
    put("DATE", _encode_date(day))
    put("HEADER2", HEADER2)
    put("MODULUS", public.n.to_bytes(KEY_BYTES, "little"))
    put("EXPONENT", struct.pack("<I", public.e))
    put("MISCSELECT", struct.pack("<I", 0))
    put("MISCMASK", struct.pack("<I", 0xFFFF_FFFF))
    put("ATTRIBUTES", struct.pack("<QQ", flags, _XFRM))
    put("ATTRIBUTEMASK", struct.pack("<QQ", _FLAGS_MASK, _XFRM_MASK))
    put("ENCLAVEHASH", enclave_hash)
    put("ISVPRODID", struct.pack("<H", isv_prod_id))
    put("ISVSVN", struct.pack("<H", isv_svn))
    signature = signer.sign_raw(signed_bytes(bytes(raw)))
    number = int.from_bytes(signature, "big")
    q1, q2 = _quotients(number, public.n)
    put("SIGNATURE", number.to_bytes(KEY_BYTES, "little"))
    put("Q1", q1.to_bytes(KEY_BYTES, "little"))
    put("Q2", q2.to_bytes(KEY_BYTES, "little"))
    return bytes(raw)


def einit(sigstruct: bytes, measured: bytes) -> Sigstruct:
    """Launch check: the SIGSTRUCT verifies and its ENCLAVEHASH is what was measured.

    Returns the parsed SIGSTRUCT (MRSIGNER, product id, SVN, attributes); raises
    :class:`SigstructError` otherwise, and the enclave must not run.
    """
    parsed = Sigstruct.parse(sigstruct)
    parsed.verify()
    if parsed.enclave_hash != measured:
        raise SigstructError(
            f"measurement mismatch: the enclave measures to {measured.hex()} but its "
            f"SIGSTRUCT was signed for {parsed.enclave_hash.hex()} (EINIT refuses it); "
            "rebuild and re-sign the enclave with `kubetee enclave build`"
        )
    return parsed


def _quotients(signature: int, modulus: int) -> tuple[int, int]:
    q1 = signature * signature // modulus
    q2 = (signature * signature * signature - q1 * signature * modulus) // modulus
    return q1, q2


def _encode_date(day: datetime.date) -> bytes:
    # 0xYYYYMMDD in BCD, stored as a little-endian 32-bit integer.
    return struct.pack("<I", int(f"{day.year:04d}{day.month:02d}{day.day:02d}", 16))


def _decode_date(raw: bytes) -> datetime.date:
    digits = f"{struct.unpack('<I', raw)[0]:08x}"
    try:
        return datetime.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        raise SigstructError(f"SIGSTRUCT DATE {digits} is not a BCD yyyymmdd date") from None
