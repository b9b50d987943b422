"""The Confidential Containers Key Broker Service (KBS) protocol, version 0.4.0.

Request-Challenge-Attestation-Response over HTTPS, as Trustee's KBS and the
guest-components' ``kbs_protocol`` client speak it:

1. ``POST /kbs/v0/auth`` with a :class:`Request` -> a :class:`Challenge` (a nonce)
   and a ``kbs-session-id`` cookie;
2. ``POST /kbs/v0/attest`` with an :class:`Attestation`: the runtime data
   ``{nonce, tee-pubkey}`` and the TEE evidence whose report data holds the hash of
   that runtime data (see :mod:`.runtime_data`) -> ``{"token": ...}``;
   The attestation carries ``init-data`` naming the pod, whose digest is the quote's
   CONFIGID (see :mod:`.init_data`);
3. ``GET /kbs/v0/resource/<repository>/<type>/<tag>`` -> the resource as a
   flattened JWE (``ECDH-ES+A256KW`` / ``A256GCM``) to the TEE public key.

Both sides of KubeTEE use this package: the enclave runtime (the client) and the
attestation service (the server).
"""

from enclave_runtime.kbs_protocol.errors import (
    KbsClientError,
    KbsConnectionLostError,
    KbsProtocolError,
    KbsRefusedError,
    KbsUnavailableError,
)
from enclave_runtime.kbs_protocol.jwe import decrypt_response, encrypt_to_tee_key
from enclave_runtime.kbs_protocol.keys import TeeKeyPair
from enclave_runtime.kbs_protocol.models import (
    KBS_PROTOCOL_VERSION,
    SESSION_COOKIE,
    Attestation,
    Challenge,
    CompositeEvidence,
    ErrorInformation,
    InitData,
    JweResponse,
    Request,
    RuntimeData,
    SgxEvidence,
    TeePubKey,
)
from enclave_runtime.kbs_protocol.runtime_data import report_data_for, runtime_data_digest

__all__ = [
    "KBS_PROTOCOL_VERSION",
    "SESSION_COOKIE",
    "Attestation",
    "Challenge",
    "CompositeEvidence",
    "ErrorInformation",
    "InitData",
    "JweResponse",
    "KbsClientError",
    "KbsConnectionLostError",
    "KbsProtocolError",
    "KbsRefusedError",
    "KbsUnavailableError",
    "Request",
    "RuntimeData",
    "SgxEvidence",
    "TeeKeyPair",
    "TeePubKey",
    "decrypt_response",
    "encrypt_to_tee_key",
    "report_data_for",
    "runtime_data_digest",
]
