"""Resources wrapped to the TEE key: JWE ``ECDH-ES+A256KW`` / ``A256GCM``.

Encryption is built from ``cryptography`` primitives (ECDH, AES key wrap, AES-GCM; the
Concat KDF's one SHA-256 round from ``hashlib``) so the protected header's bytes are
under control: kbs_protocol (kbs-types) parses the header and re-serializes it to
compute the GCM AAD, with ``alg`` and ``enc`` first and the other members after them,
map keys sorted unless serde's insertion order is kept. A header written compact with
every key sorted (``alg`` < ``enc`` < ``epk``; ``crv`` < ``kty`` < ``x`` < ``y``)
re-serializes to the same bytes either way.
Decryption is built from the same primitives and accepts exactly this algorithm pair,
checking what RFC 7516/7518 ask of a recipient (the header is a JSON object, ``alg`` and
``enc`` as expected, no ``crit`` or ``zip``, ``epk`` a point on the TEE key's curve,
strict base64url, the key unwrap and the GCM tag); tests prove it interoperates with
joserfc, an independent implementation of RFC 7516, both ways.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections import Counter

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from enclave_runtime.kbs_protocol.errors import KbsProtocolError
from enclave_runtime.kbs_protocol.keys import TeeKeyPair
from enclave_runtime.kbs_protocol.models import (
    JWE_ALG,
    JWE_ENC,
    JweResponse,
    TeePubKey,
    jwk_coordinates,
)

_KEY_BYTES = 32  # A256KW and A256GCM
_IV_BYTES = 12
_TAG_BYTES = 16
_MAX_HEADER_CHARS = 4096  # ours are about 250: bounds the JSON parsed before any check
_B64URL_TO_STANDARD = bytes.maketrans(b"-_+/=", b"+/!!!")
# The parts of the Concat KDF's input that are the same for every key (see below).
_FIRST_ROUND = (1).to_bytes(4, "big")
_ALG_ID = len(JWE_ALG).to_bytes(4, "big") + JWE_ALG.encode()
_SUPP_PUB_INFO = (8 * _KEY_BYTES).to_bytes(4, "big")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _length_prefixed(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _key_encryption_key(shared_secret: bytes, apu: bytes = b"", apv: bytes = b"") -> bytes:
    """RFC 7518 4.6.2: Concat KDF (NIST SP 800-56A 5.8.1) with SHA-256, AlgorithmID =
    alg, PartyUInfo/PartyVInfo = the header's apu/apv (none when encrypting here), 256
    bits: one SHA-256 output is the whole key, so the KDF is its first round alone,
    ``SHA-256(counter 1 || Z || OtherInfo)`` (equal to ``ConcatKDFHash``'s, tested)."""
    other_info = _ALG_ID + _length_prefixed(apu) + _length_prefixed(apv) + _SUPP_PUB_INFO
    return hashlib.sha256(_FIRST_ROUND + shared_secret + other_info).digest()


def protected_header(epk: ec.EllipticCurvePublicKey, crv: str) -> bytes:
    """The protected header's exact bytes (see the module docstring for why sorted)."""
    x, y = jwk_coordinates(epk)
    header = {
        "alg": JWE_ALG,
        "enc": JWE_ENC,
        "epk": {"crv": crv, "kty": "EC", "x": x, "y": y},
    }
    return json.dumps(header, separators=(",", ":"), sort_keys=True).encode()


def encrypt_to_tee_key(plaintext: bytes, tee_pubkey: TeePubKey) -> JweResponse:
    """Wrap ``plaintext`` so only the holder of the TEE private key can read it."""
    try:
        recipient = tee_pubkey.public_key()
    except ValueError as exc:
        raise KbsProtocolError("tee-pubkey is not a valid EC public key on its curve") from exc
    ephemeral = ec.generate_private_key(recipient.curve)
    kek = _key_encryption_key(ephemeral.exchange(ec.ECDH(), recipient))
    cek = os.urandom(_KEY_BYTES)
    protected = _b64url(protected_header(ephemeral.public_key(), tee_pubkey.crv))
    iv = os.urandom(_IV_BYTES)
    sealed = AESGCM(cek).encrypt(iv, plaintext, protected.encode("ascii"))
    return JweResponse(
        protected=protected,
        encrypted_key=_b64url(aes_key_wrap(kek, cek)),
        iv=_b64url(iv),
        ciphertext=_b64url(sealed[:-_TAG_BYTES]),
        tag=_b64url(sealed[-_TAG_BYTES:]),
    )


def decrypt_response(response: JweResponse, key_pair: TeeKeyPair) -> bytes:
    """The plaintext of a KBS resource response; :class:`KbsProtocolError` if it is not a
    JWE this TEE key can open (the message names what is wrong, never key or plaintext)."""
    if response.aad is not None:
        raise KbsProtocolError("resource JWE carries additional authenticated data; not expected")
    # Every format check before the key agreement: a malformed response costs little.
    header = _read_protected_header(response.protected)
    epk = _ephemeral_key(header.get("epk"), key_pair)
    apu, apv = _optional_b64url(header, "apu"), _optional_b64url(header, "apv")
    encrypted_key = _unb64url(response.encrypted_key, "encrypted_key")
    iv = _unb64url(response.iv, "iv")
    tag = _unb64url(response.tag, "tag")
    ciphertext = _unb64url(response.ciphertext, "ciphertext")
    if len(encrypted_key) != _KEY_BYTES + 8:
        raise KbsProtocolError(
            f"resource JWE encrypted_key must be {_KEY_BYTES + 8} bytes (A256KW)"
        )
    if len(iv) != _IV_BYTES:
        raise KbsProtocolError(f"resource JWE iv must be {_IV_BYTES} bytes (A256GCM)")
    if len(tag) != _TAG_BYTES:
        raise KbsProtocolError(f"resource JWE tag must be {_TAG_BYTES} bytes (A256GCM)")
    kek = _key_encryption_key(key_pair.private_key.exchange(ec.ECDH(), epk), apu, apv)
    try:
        cek = aes_key_unwrap(kek, encrypted_key)
    except InvalidUnwrap:
        raise KbsProtocolError(
            "resource JWE does not decrypt with this TEE key (the key unwrap failed)"
        ) from None
    try:
        # RFC 7516 5.2 step 14: the AAD is the protected header exactly as sent (ASCII).
        return AESGCM(cek).decrypt(iv, ciphertext + tag, response.protected.encode("ascii"))
    except InvalidTag:
        raise KbsProtocolError(
            "resource JWE does not decrypt with this TEE key (the authentication tag is wrong)"
        ) from None


def _read_protected_header(protected: str) -> dict[str, object]:
    """The protected header as RFC 7516/7518 let a recipient accept it for this algorithm."""
    if not protected:
        raise KbsProtocolError("resource JWE has no protected header")
    if len(protected) > _MAX_HEADER_CHARS:
        raise KbsProtocolError(f"resource JWE protected header is over {_MAX_HEADER_CHARS} chars")
    raw = _unb64url(protected, "protected header")
    try:
        header: object = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_members)
    except _DuplicateMemberError as exc:
        raise KbsProtocolError(f"resource JWE protected header repeats member {exc}") from None
    except (ValueError, RecursionError):
        raise KbsProtocolError("resource JWE protected header is not UTF-8 JSON") from None
    if not isinstance(header, dict):
        raise KbsProtocolError("resource JWE protected header is not a JSON object")
    if header.get("alg") != JWE_ALG:
        raise KbsProtocolError(f"resource JWE alg must be {JWE_ALG}")
    if header.get("enc") != JWE_ENC:
        raise KbsProtocolError(f"resource JWE enc must be {JWE_ENC}")
    # No extension this implementation understands may be critical (RFC 7516 4.1.13), and
    # the plaintext is never compressed (a "zip" would have to be honoured, not ignored).
    for member in ("crit", "zip"):
        if member in header:
            raise KbsProtocolError(f"resource JWE protected header has {member!r}; not supported")
    return header


def _ephemeral_key(epk: object, key_pair: TeeKeyPair) -> ec.EllipticCurvePublicKey:
    """``epk``: an EC public key on the TEE key's curve (cryptography refuses a point off
    the curve, so no invalid-curve point reaches the key agreement)."""
    if not isinstance(epk, dict):
        raise KbsProtocolError("resource JWE protected header has no epk object")
    if epk.get("kty") != "EC" or epk.get("crv") != key_pair.crv:
        raise KbsProtocolError(f"resource JWE epk must be an EC key on {key_pair.crv}")
    curve = key_pair.private_key.curve
    size = (curve.key_size + 7) // 8
    x, y = epk.get("x"), epk.get("y")
    if not (isinstance(x, str) and isinstance(y, str)):
        raise KbsProtocolError("resource JWE epk has no x and y coordinates")
    point = _unb64url(x, "epk x"), _unb64url(y, "epk y")
    if len(point[0]) != size or len(point[1]) != size:
        raise KbsProtocolError(f"resource JWE epk coordinates must be {size} bytes")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, b"\x04" + point[0] + point[1])
    except ValueError:
        raise KbsProtocolError(f"resource JWE epk is not a point on {key_pair.crv}") from None


def _optional_b64url(header: dict[str, object], member: str) -> bytes:
    value = header.get(member)
    if value is None:
        return b""
    if not isinstance(value, str):
        raise KbsProtocolError(f"resource JWE {member} is not a base64url string")
    return _unb64url(value, member)


def _unb64url(value: str, what: str) -> bytes:
    """Strict base64url without padding (RFC 7515 2): the alphabet only, and the one
    encoding of its bytes (no stray bits in the last character)."""
    try:
        # "-" and "_" become the standard alphabet's "+" and "/", which (like "=") are
        # not base64url: they become "!", which the strict decoder refuses, as it refuses
        # anything else outside the alphabet (a non-ASCII character is not encoded
        # into the alphabet's bytes either).
        standard = value.encode().translate(_B64URL_TO_STANDARD)
        raw = binascii.a2b_base64(standard + b"=" * (-len(value) % 4), strict_mode=True)
    except ValueError:  # binascii.Error, UnicodeEncodeError
        raise KbsProtocolError(f"resource JWE {what} is not base64url") from None
    if _b64url(raw) != value:
        raise KbsProtocolError(f"resource JWE {what} is not canonical base64url")
    return raw


class _DuplicateMemberError(ValueError):
    """A JSON object names a member twice (RFC 7516 4: reject, or keep only the last)."""


def _unique_members(pairs: list[tuple[str, object]]) -> dict[str, object]:
    members = dict(pairs)
    if len(members) != len(pairs):
        repeated = next(name for name, count in Counter(n for n, _ in pairs).items() if count > 1)
        raise _DuplicateMemberError(repr(repeated[:40]))
    return members
