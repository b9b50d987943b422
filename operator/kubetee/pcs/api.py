"""The PCCS/PCS v4 collateral API as KubeTEE's PCS serves and its attestation service reads it.

Paths under ``/sgx/certification/v4/`` (Intel's Provisioning Certification Service API
v4, which Intel's PCCS caches and serves the same way):

``tcb?fmspc=<12 hex>``
    ``{"tcbInfo": {...}, "signature": "<hex r||s>"}``; the signed bytes are the exact
    text of the ``tcbInfo`` value. Header ``TCB-Info-Issuer-Chain`` (API v3:
    ``SGX-TCB-Info-Issuer-Chain``).
``qe/identity``
    ``{"enclaveIdentity": {...}, "signature": "<hex>"}``; header
    ``SGX-Enclave-Identity-Issuer-Chain``.
``pckcrl?ca=processor|platform[&encoding=der]``
    the PCK CRL of that CA, PEM unless ``encoding=der`` (or ``Accept:
    application/pkix-crl``); header ``SGX-PCK-CRL-Issuer-Chain``.
``rootcacrl``
    the root CA CRL, as hex of its DER (what Intel's PCCS answers).

Issuer chains travel URL-encoded (percent-encoded PEM), as Intel's services send them.
"""

from __future__ import annotations

import json
import urllib.parse

PREFIX = "/sgx/certification/v4"
TCB_PATH = f"{PREFIX}/tcb"
QE_IDENTITY_PATH = f"{PREFIX}/qe/identity"
PCK_CRL_PATH = f"{PREFIX}/pckcrl"
ROOT_CA_CRL_PATH = f"{PREFIX}/rootcacrl"

TCB_INFO_ISSUER_CHAIN = "TCB-Info-Issuer-Chain"
TCB_INFO_ISSUER_CHAIN_V3 = "SGX-TCB-Info-Issuer-Chain"
ENCLAVE_IDENTITY_ISSUER_CHAIN = "SGX-Enclave-Identity-Issuer-Chain"
PCK_CRL_ISSUER_CHAIN = "SGX-PCK-CRL-Issuer-Chain"
FMSPC_HEADER = "SGX-FMSPC"
CA_TYPE_HEADER = "SGX-PCK-Certificate-CA-Type"

TCB_INFO_KEY = "tcbInfo"
ENCLAVE_IDENTITY_KEY = "enclaveIdentity"
CA_TYPES = ("processor", "platform")
CRL_MEDIA_TYPE = "application/pkix-crl"


class PccsFormatError(ValueError):
    """A PCCS answer is not in the form the API specifies."""


def encode_chain(pem: str) -> str:
    """An issuer chain as a header value: percent-encoded PEM."""
    return urllib.parse.quote(pem, safe="")


def decode_chain(value: str) -> str:
    return urllib.parse.unquote(value)


def signed_body(key: str, text: str, signature: bytes) -> bytes:
    """``{"<key>": <text verbatim>, "signature": "<hex>"}``."""
    return f'{{"{key}":{text},"signature":"{signature.hex()}"}}'.encode()


def split_signed_body(body: bytes, key: str) -> tuple[str, bytes]:
    """The exact signed text of ``key``'s value and the signature, from a PCCS body.

    The value is cut out of the body as sent, not re-serialised, so the bytes the
    signature covers are kept whatever spacing the server used.
    """
    try:
        text = body.decode("utf-8")
        document = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise PccsFormatError(f"the {key} answer is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get(key), dict):
        raise PccsFormatError(f'the answer must be {{"{key}": {{...}}, "signature": ...}}')
    signature = document.get("signature")
    try:
        raw = bytes.fromhex(signature) if isinstance(signature, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != 64:
        raise PccsFormatError(f"the {key} signature must be 64 bytes of hex")
    decoder = json.JSONDecoder()
    position = text.index("{") + 1
    while position < len(text):
        position = _skip_space(text, position)
        name, position = decoder.raw_decode(text, position)
        position = _skip_space(text, position)
        if text[position] != ":":
            break
        start = _skip_space(text, position + 1)
        _, end = decoder.raw_decode(text, start)
        if name == key:
            return text[start:end], raw
        position = _skip_space(text, end)
        if text[position] != ",":
            break
        position += 1
    raise PccsFormatError(f"the {key} answer could not be split")  # pragma: no cover


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def json_field(text: str, name: str) -> str:
    """A top-level string field of a signed JSON document (e.g. ``nextUpdate``)."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise PccsFormatError("the signed document is not JSON") from None
    value = document.get(name) if isinstance(document, dict) else None
    if not isinstance(value, str):
        raise PccsFormatError(f"the signed document has no string {name}")
    return value
