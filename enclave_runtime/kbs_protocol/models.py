"""KBS protocol payloads (field names as in the ``kbs-types`` crate, protocol 0.4.0).

Models parse with ``extra="forbid"`` where the protocol fixes the shape, so a
misspelt field is a clear 400 rather than a silently ignored value.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

KBS_PROTOCOL_VERSION = "0.4.0"
"""The protocol version this implementation speaks (Trustee KBS 0.4.x)."""

SESSION_COOKIE = "kbs-session-id"
"""The cookie that carries the session from ``/auth`` to ``/attest`` and ``/resource``."""

TEE_SGX = "sgx"

JWE_ALG = "ECDH-ES+A256KW"
JWE_ENC = "A256GCM"


class _Wire(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="forbid")

    def to_wire(self) -> dict[str, JsonValue]:
        """The JSON object as sent on the wire (hyphenated names, no unset optionals)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Request(_Wire):
    """``POST /kbs/v0/auth`` body: who is about to attest."""

    version: str
    tee: str
    extra_params: JsonValue = Field(default="", alias="extra-params")


class Challenge(_Wire):
    """``/auth`` response: the nonce the evidence must bind."""

    nonce: str
    extra_params: JsonValue = Field(default="", alias="extra-params")


class TeePubKey(_Wire):
    """The ephemeral public key of the TEE, a JWK (RFC 7517) of an EC key.

    ``alg`` names the JWE key management algorithm the KBS must use for it.
    """

    kty: Literal["EC"]
    crv: Literal["P-256", "P-384"]
    alg: Literal["ECDH-ES+A256KW"]
    x: str = Field(min_length=1)
    y: str = Field(min_length=1)


class RuntimeData(_Wire):
    """Data of this attestation session, bound into the evidence by its hash."""

    nonce: str = Field(min_length=1)
    tee_pubkey: TeePubKey = Field(alias="tee-pubkey")


class SgxEvidence(_Wire):
    """The primary evidence of an SGX TEE: the DCAP quote, base64 (standard alphabet)."""

    quote: str = Field(min_length=1)


class CompositeEvidence(_Wire):
    """Primary TEE evidence and the (JSON string) map of additional device evidence."""

    primary_evidence: JsonValue
    additional_evidence: str = ""


class InitData(_Wire):
    format: str
    body: str


class Attestation(_Wire):
    """``POST /kbs/v0/attest`` body."""

    init_data: InitData | None = Field(default=None, alias="init-data")
    runtime_data: RuntimeData = Field(alias="runtime-data")
    tee_evidence: CompositeEvidence = Field(alias="tee-evidence")


class JweResponse(_Wire):
    """A resource, as a JWE in flattened JSON serialization (RFC 7516 section 7.2.2)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    protected: str
    encrypted_key: str
    iv: str
    ciphertext: str
    tag: str
    aad: str | None = None


class ErrorInformation(_Wire):
    """RFC 7807 problem details, as the KBS reports errors.

    ``type`` ends in the CamelCase reason; ``detail`` is for people.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: str
    detail: str
