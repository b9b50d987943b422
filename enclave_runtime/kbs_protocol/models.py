"""KBS protocol payloads (field names as in the ``kbs-types`` crate, protocol 0.4.0).

Models parse with ``extra="forbid"`` where the protocol fixes the shape, so a
misspelt field is a clear 400 rather than a silently ignored value.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections import OrderedDict
from typing import Literal, Self

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

KBS_PROTOCOL_VERSION = "0.4.0"
"""The protocol version this implementation speaks (Trustee KBS 0.4.x)."""

SESSION_COOKIE = "kbs-session-id"
"""The cookie that carries the session from ``/auth`` to ``/attest`` and ``/resource``."""

TEE_SGX = "sgx"

HASH_ALGORITHM = "sha384"
"""The runtime-data hash this implementation uses: kbs_protocol's default."""
SUPPORTED_HASH_ALGORITHMS = "supported-hash-algorithms"
SELECTED_HASH_ALGORITHM = "selected-hash-algorithm"
"""``extra-params`` keys: the client's hash algorithms at /auth, the KBS's choice back."""

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


# The curves a tee-pubkey may be on, by JWK ``crv``.
CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}


class TeePubKey(_Wire):
    """The ephemeral public key of the TEE, a JWK (RFC 7517) of an EC key.

    ``alg`` names the JWE key management algorithm the KBS must use for it. The point
    must lie on its curve: a key that cannot be wrapped to is refused when it arrives,
    not when a resource is asked for.
    """

    kty: Literal["EC"]
    crv: Literal["P-256", "P-384", "P-521"]
    alg: Literal["ECDH-ES+A256KW"]
    x: str = Field(min_length=1, max_length=128)
    y: str = Field(min_length=1, max_length=128)

    @model_validator(mode="after")
    def _on_curve(self) -> Self:
        self.public_key()
        return self

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The key as a ``cryptography`` object; ``ValueError`` if it is not on its curve."""
        return _public_key(self.crv, self.x, self.y)


# One attestation validates its tee-pubkey several times (request, token, resource), and
# a runtime builds its runtime data around a key it has just made: points already known
# to be on their curve (checked here, or the public half of a key this process made) are
# kept, so the check runs once per key. Only such points are ever kept.
_KNOWN_POINTS_KEPT = 1024
# Ordered for O(1) eviction of the oldest (a dict's first key is found by skipping the
# holes its deleted predecessors left, more of them with every eviction until it resizes).
_known_points: OrderedDict[tuple[str, str, str], ec.EllipticCurvePublicKey] = OrderedDict()
_known_points_lock = threading.Lock()


def _public_key(crv: str, x_value: str, y_value: str) -> ec.EllipticCurvePublicKey:
    point = (crv, x_value, y_value)
    key = _known_points.get(point)
    if key is None:
        curve = CURVES[crv]
        size = (curve.key_size + 7) // 8
        point_bytes = b"\x04" + _coordinate(x_value, size) + _coordinate(y_value, size)
        try:
            key = ec.EllipticCurvePublicKey.from_encoded_point(curve, point_bytes)
        except ValueError:
            raise ValueError(f"the tee-pubkey is not a point on {crv}") from None
        _keep_known_point(point, key)
    return key


def jwk_coordinates(key: ec.EllipticCurvePublicKey) -> tuple[str, str]:
    """The JWK ``x`` and ``y`` of ``key`` (RFC 7518 6.2.1: each the curve's full size,
    big-endian, base64url without padding), sliced from its uncompressed point."""
    point = key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    size = (len(point) - 1) // 2
    return _b64url(point[1 : 1 + size]), _b64url(point[1 + size :])


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def known_on_curve(jwk: TeePubKey, key: ec.EllipticCurvePublicKey) -> None:
    """Record that ``jwk`` is ``key``, a point on its curve by making (the public half of a
    private key this process generated): validating ``jwk`` then costs a look-up."""
    _keep_known_point((jwk.crv, jwk.x, jwk.y), key)


def _keep_known_point(point: tuple[str, str, str], key: ec.EllipticCurvePublicKey) -> None:
    with _known_points_lock:  # look-ups need no lock; evicting must not race another
        if len(_known_points) >= _KNOWN_POINTS_KEPT:
            _known_points.popitem(last=False)  # the oldest: a key lives one round
        _known_points[point] = key


def _coordinate(value: str, size: int) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("a tee-pubkey coordinate is not base64url") from None
    if len(raw) != size:
        raise ValueError(f"a tee-pubkey coordinate must be {size} bytes, got {len(raw)}")
    return raw


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
    """Init-data (Trustee's initdata spec): a TOML or JSON document whose digest the TEE
    carries in a field the host sets at launch, for SGX CONFIGID."""

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

    ``type`` ends in the protocol's problem type (``AttestationError``, ``PolicyDeny``,
    ``TokenNotFound`` ...); KubeTEE adds the member ``reason``, the specific CamelCase
    refusal (``MeasurementMismatch``); ``detail`` is for people.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: str
    detail: str
    reason: str | None = None
