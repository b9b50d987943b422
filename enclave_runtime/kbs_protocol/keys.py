"""The TEE's ephemeral key pair: created per attestation, never written to disk."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from joserfc.jwk import ECKey

from enclave_runtime.kbs_protocol.models import JWE_ALG, TeePubKey

Curve = Literal["P-256", "P-384", "P-521"]


@dataclass(frozen=True, repr=False)
class TeeKeyPair:
    """An EC key pair whose public half goes into the runtime data as a JWK.

    ``repr`` is deliberately bare: the private key must not end up in a log line.
    """

    private_key: ECKey

    @classmethod
    def generate(cls, curve: Curve = "P-256") -> TeeKeyPair:
        return cls(ECKey.generate_key(curve, private=True))

    def public_jwk(self) -> TeePubKey:
        public = self.private_key.as_dict(private=False)
        return TeePubKey(kty="EC", crv=public["crv"], alg=JWE_ALG, x=public["x"], y=public["y"])

    def __repr__(self) -> str:
        return f"TeeKeyPair(crv={self.private_key.as_dict(private=False)['crv']!r})"
