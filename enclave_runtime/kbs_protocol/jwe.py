"""Resources wrapped to the TEE key: JWE ``ECDH-ES+A256KW`` / ``A256GCM``.

joserfc does the cryptography. It is asked for the compact serialization, whose
protected header carries the ephemeral ``epk`` (as Trustee's KBS sends it), and
the five parts are laid out as the flattened JSON the KBS protocol specifies.
"""

from __future__ import annotations

from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from enclave_runtime.kbs_protocol.errors import KbsProtocolError
from enclave_runtime.kbs_protocol.keys import TeeKeyPair
from enclave_runtime.kbs_protocol.models import JWE_ALG, JWE_ENC, JweResponse, TeePubKey

_ALGORITHMS = [JWE_ALG, JWE_ENC]


def encrypt_to_tee_key(plaintext: bytes, tee_pubkey: TeePubKey) -> JweResponse:
    """Wrap ``plaintext`` so only the holder of the TEE private key can read it."""
    try:
        key = ECKey.import_key(
            {"kty": "EC", "crv": tee_pubkey.crv, "x": tee_pubkey.x, "y": tee_pubkey.y}
        )
    except (JoseError, ValueError) as exc:
        raise KbsProtocolError("tee-pubkey is not a valid EC public key on its curve") from exc
    compact = jwe.encrypt_compact(
        {"alg": JWE_ALG, "enc": JWE_ENC}, plaintext, key, algorithms=_ALGORITHMS
    )
    protected, encrypted_key, iv, ciphertext, tag = compact.split(".")
    return JweResponse(
        protected=protected, encrypted_key=encrypted_key, iv=iv, ciphertext=ciphertext, tag=tag
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
