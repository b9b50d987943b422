"""The runtime-data hash that ties a quote to one KBS session.

The TEE puts ``SHA-384(JCS(runtime data))`` into the first 48 bytes of its 64-byte
SGX report data (zero padded), where JCS is the RFC 8785 canonical JSON of::

    {"additional-evidence": <tee-evidence.additional_evidence>,
     "nonce": <challenge nonce>,
     "tee-pubkey": <ephemeral public JWK>}

This is the object Trustee's KBS 0.4 rebuilds and hashes for the primary evidence,
so evidence made here verifies there and the other way round. Because the nonce is
fresh per session and the key is the one the secrets are wrapped to, a quote
cannot be replayed for another session or another key.
"""

from __future__ import annotations

import hashlib
from json.encoder import encode_basestring as _string

from enclave_runtime.kbs_protocol.models import RuntimeData

REPORT_DATA_SIZE = 64
"""Bytes of REPORTDATA in an SGX report body."""


def canonical_runtime_data(runtime_data: RuntimeData, additional_evidence: str = "") -> bytes:
    """The RFC 8785 bytes that are hashed into the evidence."""
    key = runtime_data.tee_pubkey
    # Every key is ASCII and every value a string: for such a document RFC 8785 is what
    # ``json`` writes with sorted keys, no spaces and UTF-8 kept (it escapes the same
    # characters the same way), at a fraction of a general JCS writer's cost; written
    # here member by member in that order, each string as ``json`` escapes it. A lone
    # surrogate, which no JSON parser here lets through, fails the UTF-8 encoding.
    return (
        f'{{"additional-evidence":{_string(additional_evidence)},'
        f'"nonce":{_string(runtime_data.nonce)},'
        f'"tee-pubkey":{{"alg":{_string(key.alg)},"crv":{_string(key.crv)},'
        f'"kty":{_string(key.kty)},"x":{_string(key.x)},"y":{_string(key.y)}}}}}'
    ).encode()


def runtime_data_digest(runtime_data: RuntimeData, additional_evidence: str = "") -> bytes:
    """SHA-384 of the canonical runtime data (48 bytes)."""
    return hashlib.sha384(canonical_runtime_data(runtime_data, additional_evidence)).digest()


def report_data_for(runtime_data: RuntimeData, additional_evidence: str = "") -> bytes:
    """The 64-byte SGX report data for this runtime data: digest, then zero padding."""
    digest = runtime_data_digest(runtime_data, additional_evidence)
    return digest + bytes(REPORT_DATA_SIZE - len(digest))
