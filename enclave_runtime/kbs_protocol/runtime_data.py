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

import rfc8785

from enclave_runtime.kbs_protocol.models import RuntimeData

REPORT_DATA_SIZE = 64
"""Bytes of REPORTDATA in an SGX report body."""


def canonical_runtime_data(runtime_data: RuntimeData, additional_evidence: str = "") -> bytes:
    """The RFC 8785 bytes that are hashed into the evidence."""
    document: dict[str, object] = {
        "additional-evidence": additional_evidence,
        "nonce": runtime_data.nonce,
        "tee-pubkey": runtime_data.tee_pubkey.to_wire(),
    }
    return rfc8785.dumps(document)  # type: ignore[arg-type]  # JSON by construction


def runtime_data_digest(runtime_data: RuntimeData, additional_evidence: str = "") -> bytes:
    """SHA-384 of the canonical runtime data (48 bytes)."""
    return hashlib.sha384(canonical_runtime_data(runtime_data, additional_evidence)).digest()


def report_data_for(runtime_data: RuntimeData, additional_evidence: str = "") -> bytes:
    """The 64-byte SGX report data for this runtime data: digest, then zero padding."""
    digest = runtime_data_digest(runtime_data, additional_evidence)
    return digest + bytes(REPORT_DATA_SIZE - len(digest))
