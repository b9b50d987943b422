"""The TEE's ephemeral key pair: created per attestation, never written to disk."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from cryptography.hazmat.primitives.asymmetric import ec

from enclave_runtime.kbs_protocol.models import (
    CURVES,
    TeePubKey,
    jwk_coordinates,
    known_on_curve,
)

Curve = Literal["P-256", "P-384", "P-521"]

_CURVE_NAMES: dict[str, Curve] = {CURVES[crv].name: crv for crv in get_args(Curve)}


def curve_name(curve: ec.EllipticCurve) -> Curve:
    """The JWK ``crv`` of ``curve``; ``ValueError`` for a curve JWE here does not use."""
    try:
        return _CURVE_NAMES[curve.name]
    except KeyError:
        raise ValueError(f"curve {curve.name} is not one of {', '.join(get_args(Curve))}") from None


@dataclass(frozen=True, repr=False, eq=False)
class TeeKeyPair:
    """An EC key pair whose public half goes into the runtime data as a JWK.

    ``repr`` is deliberately bare: the private key must not end up in a log line.
    """

    private_key: ec.EllipticCurvePrivateKey
    crv: Curve = field(init=False)
    _public_jwk: TeePubKey = field(init=False)

    def __post_init__(self) -> None:
        crv = curve_name(self.private_key.curve)
        public_key = self.private_key.public_key()
        x, y = jwk_coordinates(public_key)
        # Built without validation, and known to be on its curve when runtime data holding
        # it is validated: the point is this key's own, on its curve by making.
        jwk = TeePubKey.model_construct(
            kty="EC",
            crv=crv,
            alg="ECDH-ES+A256KW",  # models.JWE_ALG, as TeePubKey's type names it
            x=x,
            y=y,
        )
        known_on_curve(jwk, public_key)
        object.__setattr__(self, "crv", crv)
        object.__setattr__(self, "_public_jwk", jwk)

    @classmethod
    def generate(cls, curve: Curve = "P-256") -> TeeKeyPair:
        return cls(ec.generate_private_key(CURVES[curve]))

    def public_jwk(self) -> TeePubKey:
        """The public key as the runtime data carries it (computed once, with the key)."""
        return self._public_jwk

    def __repr__(self) -> str:
        return f"TeeKeyPair(crv={self.crv!r})"
