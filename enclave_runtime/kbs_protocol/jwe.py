"""Resources wrapped to the TEE key: JWE ``ECDH-ES+A256KW`` / ``A256GCM``.

Encryption is built from ``cryptography`` primitives (ECDH, Concat KDF, AES key wrap,
AES-GCM) so the protected header's bytes are under control: kbs_protocol (kbs-types)
parses the header and re-serializes it to compute the GCM AAD, with ``alg`` and ``enc``
first and the other members after them, map keys sorted unless serde's insertion
order is kept. A header written compact with every key sorted (``alg`` < ``enc`` <
``epk``; ``crv`` < ``kty`` < ``x`` < ``y``) re-serializes to the same bytes either way.
Decryption uses joserfc, an independent implementation of RFC 7516.
"""

from __future__ import annotations

import base64
import json
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.keywrap import aes_key_wrap
from joserfc import jwe
from joserfc.errors import JoseError

from enclave_runtime.kbs_protocol.errors import KbsProtocolError
from enclave_runtime.kbs_protocol.keys import TeeKeyPair
from enclave_runtime.kbs_protocol.models import JWE_ALG, JWE_ENC, JweResponse, TeePubKey

_ALGORITHMS = [JWE_ALG, JWE_ENC]
_KEY_BYTES = 32  # A256KW and A256GCM
_IV_BYTES = 12
_TAG_BYTES = 16


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _length_prefixed(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _key_encryption_key(shared_secret: bytes) -> bytes:
    """RFC 7518 4.6.2: Concat KDF with AlgorithmID = alg, empty apu/apv, 256 bits."""
    other_info = (
        _length_prefixed(JWE_ALG.encode())
        + _length_prefixed(b"")
        + _length_prefixed(b"")
        + (8 * _KEY_BYTES).to_bytes(4, "big")
    )
    kdf = ConcatKDFHash(algorithm=hashes.SHA256(), length=_KEY_BYTES, otherinfo=other_info)
    return kdf.derive(shared_secret)


def protected_header(epk: ec.EllipticCurvePublicKey, crv: str) -> bytes:
    """The protected header's exact bytes (see the module docstring for why sorted)."""
    numbers = epk.public_numbers()
    size = (epk.curve.key_size + 7) // 8
    header = {
        "alg": JWE_ALG,
        "enc": JWE_ENC,
        "epk": {
            "crv": crv,
            "kty": "EC",
            "x": _b64url(numbers.x.to_bytes(size, "big")),
            "y": _b64url(numbers.y.to_bytes(size, "big")),
        },
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
    """The plaintext of a KBS resource response; :class:`KbsProtocolError` if it is not ours."""
    if response.aad is not None:
        raise KbsProtocolError("resource JWE carries additional authenticated data; not expected")
    compact = ".".join(
        (response.protected, response.encrypted_key, response.iv, response.ciphertext, response.tag)
    )
    try:
        plaintext = jwe.decrypt_compact(
            compact, key_pair.private_key, algorithms=_ALGORITHMS
        ).plaintext
    except (JoseError, ValueError) as exc:
        raise KbsProtocolError(
            f"resource JWE does not decrypt with this TEE key ({type(exc).__name__})"
        ) from exc
    if plaintext is None:
        raise KbsProtocolError("resource JWE has no payload")
    return plaintext
