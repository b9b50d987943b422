"""The SGX extension of a PCK certificate (OID 1.2.840.113741.1.13.1), in DER.

Intel's PCK certificates carry the platform's identity and TCB in this extension, as
Intel's "PCK Certificate and CRL Profile" specifies::

    SGXExtensions ::= SEQUENCE OF SEQUENCE { sgxExtensionId OBJECT IDENTIFIER,
                                             sgxExtensionValue ANY }
      .1  PPID        OCTET STRING (16)
      .2  TCB         SEQUENCE OF { .2.1 .. .2.16 SGX TCB components INTEGER,
                                    .2.17 PCESVN INTEGER, .2.18 CPUSVN OCTET STRING (16) }
      .3  PCE-ID      OCTET STRING (2)
      .4  FMSPC       OCTET STRING (6)
      .5  SGX Type    ENUMERATED (0 Standard, 1 Scalable, 2 Scalable with integrity)

The simulator encodes it, the verifier decodes it; both with pyasn1's DER codec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import namedtype, univ

SGX_EXTENSION_OID = "1.2.840.113741.1.13.1"
_PPID = SGX_EXTENSION_OID + ".1"
_TCB = SGX_EXTENSION_OID + ".2"
_PCESVN = _TCB + ".17"
_CPUSVN = _TCB + ".18"
_PCE_ID = SGX_EXTENSION_OID + ".3"
_FMSPC = SGX_EXTENSION_OID + ".4"
_SGX_TYPE = SGX_EXTENSION_OID + ".5"
TCB_COMPONENT_COUNT = 16


class PckExtensionError(ValueError):
    """The SGX extension of a PCK certificate is missing or malformed."""


class _Entry(univ.Sequence):
    componentType = namedtype.NamedTypes(  # noqa: N815 (pyasn1's name)
        namedtype.NamedType("id", univ.ObjectIdentifier()),
        namedtype.NamedType("value", univ.Any()),
    )


class _Entries(univ.SequenceOf):
    componentType = _Entry()  # noqa: N815 (pyasn1's name)


@dataclass(frozen=True, slots=True)
class SgxExtension:
    """Identity and TCB of an SGX platform as its PCK certificate states them."""

    ppid: bytes
    tcb_components: tuple[int, ...]
    pcesvn: int
    cpusvn: bytes
    pce_id: bytes
    fmspc: bytes
    sgx_type: int = 0

    def to_der(self) -> bytes:
        tcb: list[tuple[str, Any]] = [
            (f"{_TCB}.{i + 1}", univ.Integer(svn)) for i, svn in enumerate(self.tcb_components)
        ]
        tcb += [(_PCESVN, univ.Integer(self.pcesvn)), (_CPUSVN, univ.OctetString(self.cpusvn))]
        return _encode_entries(
            [
                (_PPID, univ.OctetString(self.ppid)),
                (_TCB, _entries(tcb)),
                (_PCE_ID, univ.OctetString(self.pce_id)),
                (_FMSPC, univ.OctetString(self.fmspc)),
                (_SGX_TYPE, univ.Enumerated(self.sgx_type)),
            ]
        )

    @classmethod
    def from_der(cls, der: bytes) -> SgxExtension:
        """Decode the extension value; raise ``PckExtensionError`` when it is malformed."""
        try:
            top = _decode_entries(der)
            tcb = _decode_entries(_require(top, _TCB))
            components = tuple(
                _integer(_require(tcb, f"{_TCB}.{i + 1}"), 0, 255)
                for i in range(TCB_COMPONENT_COUNT)
            )
            return cls(
                ppid=_octets(_require(top, _PPID), 16),
                tcb_components=components,
                pcesvn=_integer(_require(tcb, _PCESVN), 0, 0xFFFF),
                cpusvn=_octets(_require(tcb, _CPUSVN), 16),
                pce_id=_octets(_require(top, _PCE_ID), 2),
                fmspc=_octets(_require(top, _FMSPC), 6),
                sgx_type=_enumerated(_require(top, _SGX_TYPE)),
            )
        except PyAsn1Error as error:
            raise PckExtensionError(f"SGX extension is not valid DER: {error}") from None


def _entries(items: list[tuple[str, Any]]) -> _Entries:
    entries = _Entries()
    for index, (oid, value) in enumerate(items):
        entry = _Entry()
        entry["id"] = univ.ObjectIdentifier(oid)
        entry["value"] = univ.Any(der_encoder.encode(value))
        entries[index] = entry
    return entries


def _encode_entries(items: list[tuple[str, Any]]) -> bytes:
    return cast(bytes, der_encoder.encode(_entries(items)))


def _decode_one(der: bytes, spec: Any) -> Any:
    value, rest = der_decoder.decode(der, asn1Spec=spec)
    if rest:
        raise PckExtensionError(f"{len(rest)} unexpected bytes after a DER value")
    return value


def _decode_entries(der: bytes) -> dict[str, bytes]:
    result: dict[str, bytes] = {}
    for entry in _decode_one(der, _Entries()):
        oid = str(entry["id"])
        if oid in result:
            raise PckExtensionError(f"SGX extension repeats {oid}")
        result[oid] = bytes(entry["value"])
    return result


def _require(entries: dict[str, bytes], oid: str) -> bytes:
    try:
        return entries[oid]
    except KeyError:
        raise PckExtensionError(f"SGX extension lacks {oid}") from None


def _octets(der: bytes, size: int) -> bytes:
    value = bytes(_decode_one(der, univ.OctetString()))
    if len(value) != size:
        raise PckExtensionError(f"expected {size} bytes, got {len(value)}")
    return value


def _integer(der: bytes, low: int, high: int) -> int:
    value = int(_decode_one(der, univ.Integer()))
    if not low <= value <= high:
        raise PckExtensionError(f"integer {value} outside {low}..{high}")
    return value


def _enumerated(der: bytes) -> int:
    return int(_decode_one(der, univ.Enumerated()))
