"""Platform registration: how a node gets the PCK certificate for its own platform keys.

The node's platform (:class:`PlatformKeys`) never leaves the node; only its public
part travels. The node proves it is a node of the cluster with a Kubernetes
ServiceAccount token bound to its pod (or, on the local cluster, to its Node) and
audience ``kubetee-pcs``; the PCS takes the node's name from that token, never from
the request. The request proves possession of the PCK key by a signature over the
rest of the request, like a certificate signing request.

``POST /kubetee/v1/platforms`` (``Authorization: Bearer <token>``) with::

    {"ppid", "cpusvn", "pcesvn", "pce_id", "fmspc", "qe_id", "ca": "processor"|"platform",
     "pck_public_key": <PEM>, "proof": <hex r||s of SHA-256 ECDSA over the canonical
     JSON of every other field>}

answers ``201 {"node", "pck_certificate_chain": <PEM leaf, CA, root>,
"quoting_enclave": {...}}`` with the PCS API's headers ``SGX-FMSPC`` and
``SGX-PCK-Certificate-CA-Type``; refusals are ``{"error": CODE, "message"}`` with 400
(malformed), 401 (no valid token) or 403 (a valid token that is not a node's).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from enclave_runtime.sgx import _pki
from enclave_runtime.sgx.platform import (
    PlatformIdentity,
    PlatformKeys,
    QuotingEnclaveIdentity,
    SimulatedPlatform,
)

REGISTRATION_PATH = "/kubetee/v1/platforms"
PCS_AUDIENCE = "kubetee-pcs"
"""The audience a node's ServiceAccount token must be issued for."""
PCK_CA_TYPES = ("processor", "platform")
_HEX_FIELDS = {"ppid": 16, "cpusvn": 16, "pce_id": 2, "fmspc": 6, "qe_id": 16}
MAX_REQUEST_BYTES = 16 * 1024


class RegistrationError(Exception):
    """Registration failed; ``code`` says why, ``retryable`` whether trying again may help."""

    def __init__(self, message: str, *, code: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class RegistrationRequest:
    """A checked registration request: the platform and the PCK key to certify."""

    identity: PlatformIdentity
    pck_public_key: ec.EllipticCurvePublicKey


def _canonical(fields: Mapping[str, object]) -> bytes:
    return json.dumps(dict(fields), sort_keys=True, separators=(",", ":")).encode()


def registration_request(keys: PlatformKeys) -> dict[str, object]:
    """The request body registering ``keys``, signed with the PCK key."""
    identity = keys.identity
    fields: dict[str, object] = {
        "ppid": identity.ppid.hex(),
        "cpusvn": identity.cpusvn.hex(),
        "pcesvn": identity.pcesvn,
        "pce_id": identity.pce_id.hex(),
        "fmspc": identity.fmspc.hex().upper(),
        "qe_id": identity.qe_id.hex(),
        "ca": identity.pck_ca_type,
        "pck_public_key": keys.pck_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
    }
    fields["proof"] = _pki.sign_raw(keys.pck_key, _canonical(fields)).hex()
    return fields


def _malformed(message: str) -> RegistrationError:
    return RegistrationError(message, code="REGISTRATION_MALFORMED")


def parse_registration_request(data: object) -> RegistrationRequest:
    """Check a registration body; ``RegistrationError`` names the first problem."""
    if not isinstance(data, dict):
        raise _malformed("the registration request must be a JSON object")
    expected = {*_HEX_FIELDS, "pcesvn", "ca", "pck_public_key", "proof"}
    missing = sorted(expected - data.keys())
    if missing:
        raise _malformed(f"the registration request lacks {', '.join(missing)}")
    unknown = sorted(data.keys() - expected)
    if unknown:
        raise _malformed(f"the registration request has unknown fields {', '.join(unknown)}")
    values: dict[str, bytes] = {}
    for name, size in _HEX_FIELDS.items():
        value = data[name]
        try:
            raw = bytes.fromhex(value) if isinstance(value, str) and value.isascii() else None
        except ValueError:
            raw = None
        if raw is None or len(raw) != size:
            raise _malformed(f"{name} must be {size} bytes of hex")
        values[name] = raw
    pcesvn = data["pcesvn"]
    if not isinstance(pcesvn, int) or isinstance(pcesvn, bool) or not 0 <= pcesvn <= 0xFFFF:
        raise _malformed("pcesvn must be an integer 0..65535")
    ca = data["ca"]
    if ca not in PCK_CA_TYPES:
        raise _malformed("ca must be 'processor' or 'platform'")
    key = _public_key(data["pck_public_key"])
    proof = data["proof"]
    try:
        signature = bytes.fromhex(proof) if isinstance(proof, str) and proof.isascii() else b""
    except ValueError:
        signature = b""
    if len(signature) != 64:
        raise _malformed("proof must be 64 bytes of hex (r||s)")
    signed = _canonical({k: v for k, v in data.items() if k != "proof"})
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise RegistrationError(
            "proof does not verify with pck_public_key: the request was not signed by the "
            "platform's PCK key",
            code="PROOF_INVALID",
        ) from None
    identity = PlatformIdentity(
        ppid=values["ppid"],
        cpusvn=values["cpusvn"],
        pcesvn=pcesvn,
        pce_id=values["pce_id"],
        fmspc=values["fmspc"],
        qe_id=values["qe_id"],
        pck_ca_type=str(ca),
    )
    return RegistrationRequest(identity=identity, pck_public_key=key)


def _public_key(value: object) -> ec.EllipticCurvePublicKey:
    if not isinstance(value, str) or not value.isascii():
        raise _malformed("pck_public_key must be a PEM public key")
    try:
        key = serialization.load_pem_public_key(value.encode())
    except (ValueError, TypeError):
        raise _malformed("pck_public_key is not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise _malformed("pck_public_key must be an ECDSA P-256 key")
    return key


def register(
    platform_dir: Path,
    pcs_url: str,
    token: str,
    *,
    ca_file: Path | None = None,
    timeout: float = 10.0,
) -> SimulatedPlatform:
    """Register the platform in ``platform_dir`` with the PCS and save its PCK chain.

    Raises ``RegistrationError``: ``retryable`` for an unreachable or failing PCS.
    """
    keys = PlatformKeys.load(platform_dir)
    body = json.dumps(registration_request(keys)).encode()
    request = urllib.request.Request(  # noqa: S310 - the configured PCS URL (https)
        pcs_url.rstrip("/") + REGISTRATION_PATH,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
            answer = json.loads(response.read(256 * 1024))
    except urllib.error.HTTPError as error:
        raise _refusal(error) from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise RegistrationError(
            f"cannot reach the PCS at {pcs_url}: {error}", code="PCS_UNREACHABLE", retryable=True
        ) from None
    platform = _registered(keys, answer)
    platform.save(platform_dir)
    return platform


def _refusal(error: urllib.error.HTTPError) -> RegistrationError:
    try:
        document: Any = json.loads(error.read(64 * 1024))
    except (ValueError, OSError):
        document = {}
    if not isinstance(document, dict):
        document = {}
    code = str(document.get("error") or f"HTTP_{error.code}")
    message = str(document.get("message") or error.reason)
    return RegistrationError(
        f"the PCS refused the registration ({error.code} {code}): {message}",
        code=code,
        retryable=error.code >= 500,
    )


def _registered(keys: PlatformKeys, answer: object) -> SimulatedPlatform:
    if not isinstance(answer, dict):
        raise RegistrationError("the PCS answered with a non-object", code="PCS_ANSWER_INVALID")
    try:
        chain = x509.load_pem_x509_certificates(str(answer["pck_certificate_chain"]).encode())
        quoting_enclave = QuotingEnclaveIdentity.from_json(answer["quoting_enclave"])
        return keys.registered(chain, quoting_enclave)
    except (KeyError, TypeError, ValueError) as error:
        raise RegistrationError(
            f"the PCS answer is not a PCK chain for this platform: {error}",
            code="PCS_ANSWER_INVALID",
        ) from None
