"""Quote verification collateral in the nine-field JSON form used by DCAP tooling.

Fields (as Intel's PCS serves them): ``pck_crl_issuer_chain``, ``tcb_info_issuer_chain``
and ``qe_identity_issuer_chain`` are PEM chains; ``root_ca_crl`` and ``pck_crl`` are hex
of DER (PEM is accepted too); ``tcb_info`` and ``qe_identity`` are the exact signed JSON
text; ``tcb_info_signature`` and ``qe_identity_signature`` are hex of the 64-byte r||s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kubetee.attestation.errors import CollateralInvalidError

FIELDS = (
    "pck_crl_issuer_chain",
    "root_ca_crl",
    "pck_crl",
    "tcb_info_issuer_chain",
    "tcb_info",
    "tcb_info_signature",
    "qe_identity_issuer_chain",
    "qe_identity",
    "qe_identity_signature",
)


@dataclass(frozen=True, slots=True)
class Collateral:
    """The collateral needed to verify quotes of one platform family (FMSPC).

    Instances are immutable and compare by content, so they serve as cache keys:
    any changed byte (a new CRL, new TCB Info) is a different key.
    """

    pck_crl_issuer_chain: str
    root_ca_crl: bytes
    pck_crl: bytes
    tcb_info_issuer_chain: str
    tcb_info: str
    tcb_info_signature: bytes
    qe_identity_issuer_chain: str
    qe_identity: str
    qe_identity_signature: bytes

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Collateral:
        """Read the nine fields; unknown extra fields are ignored."""
        if not isinstance(data, Mapping):
            raise _malformed(f"collateral must be a JSON object, not {type(data).__name__}")
        missing = [name for name in FIELDS if name not in data]
        if missing:
            raise _malformed(f"collateral lacks {', '.join(missing)}")
        values: dict[str, str] = {}
        for name in FIELDS:
            value = data[name]
            if not isinstance(value, str):
                raise _malformed(f"collateral field {name} must be a string")
            values[name] = value
        return cls(
            pck_crl_issuer_chain=values["pck_crl_issuer_chain"],
            root_ca_crl=_crl_der(values["root_ca_crl"], "root_ca_crl"),
            pck_crl=_crl_der(values["pck_crl"], "pck_crl"),
            tcb_info_issuer_chain=values["tcb_info_issuer_chain"],
            tcb_info=values["tcb_info"],
            tcb_info_signature=_signature(values["tcb_info_signature"], "tcb_info_signature"),
            qe_identity_issuer_chain=values["qe_identity_issuer_chain"],
            qe_identity=values["qe_identity"],
            qe_identity_signature=_signature(
                values["qe_identity_signature"], "qe_identity_signature"
            ),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Collateral:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise _malformed("collateral is not JSON (or nested too deeply)") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: Path | str) -> Collateral:
        try:
            text = Path(path).read_bytes()
        except OSError as error:
            raise _malformed(f"cannot read collateral {path}: {error.strerror}") from None
        return cls.from_json(text)

    def to_dict(self) -> dict[str, str]:
        return {
            "pck_crl_issuer_chain": self.pck_crl_issuer_chain,
            "root_ca_crl": self.root_ca_crl.hex(),
            "pck_crl": self.pck_crl.hex(),
            "tcb_info_issuer_chain": self.tcb_info_issuer_chain,
            "tcb_info": self.tcb_info,
            "tcb_info_signature": self.tcb_info_signature.hex(),
            "qe_identity_issuer_chain": self.qe_identity_issuer_chain,
            "qe_identity": self.qe_identity,
            "qe_identity_signature": self.qe_identity_signature.hex(),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def _malformed(message: str) -> CollateralInvalidError:
    return CollateralInvalidError(message, code="COLLATERAL_MALFORMED")


def _crl_der(value: str, name: str) -> bytes:
    text = value.strip()
    if text.startswith("-----BEGIN"):
        try:
            crl = x509.load_pem_x509_crl(text.encode())
        except ValueError:
            raise _malformed(f"collateral field {name} is not a PEM CRL") from None
        return crl.public_bytes(serialization.Encoding.DER)
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise _malformed(f"collateral field {name} is neither hex DER nor PEM") from None


def _signature(value: str, name: str) -> bytes:
    try:
        signature = bytes.fromhex(value.strip())
    except ValueError:
        raise _malformed(f"collateral field {name} is not hex") from None
    if len(signature) != 64:
        raise _malformed(f"collateral field {name} must be 64 bytes (r||s), got {len(signature)}")
    return signature
