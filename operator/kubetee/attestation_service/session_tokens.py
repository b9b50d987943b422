"""The two HMAC-SHA256 formats of the service's sessions, made with the standard library.

- :class:`Hs256Jwt`: the attestation token ``/attest`` returns is an HS256 JWT (RFC
  7519), which a stock client reads (it takes ``exp`` from its claims). It is written
  byte for byte as joserfc writes one (header ``{"typ":"JWT","alg":"HS256"}``, compact
  JSON claims, UTF-8 kept), so any JWT library verifies it with the key, but without
  joserfc's per-call registry, key and header machinery: signing and checking were
  13 % of the service's time per attestation.
- :class:`ChallengeCookie`: the ``/auth`` cookie only this service ever reads, so it
  is no JWT: ``kc1.<exp>.<nonce>.<replica>.<mac>``, its fields in cookie-safe
  characters and the MAC over everything before it.

Both compare MACs in constant time and by their text (a token differing in any
character, even one that decodes to the same bytes, is refused), and verify before
reading anything from the value.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from dataclasses import dataclass, field
from typing import Any

MAX_CHARS = 8192
_DIGEST = "sha256"
# As joserfc writes it (jwt.encode: {"typ": "JWT", **{"alg": "HS256"}}).
_JWT_HEADER = base64.urlsafe_b64encode(b'{"typ":"JWT","alg":"HS256"}').rstrip(b"=").decode()
_CHALLENGE_PREFIX = "kc1"
_NO_REPLICA = "-"
# A replica id is written into the cookie as it is: no "." (the separator) or cookie syntax.
_REPLICA = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TO_URLSAFE = str.maketrans("+/", "-_")
_FROM_URLSAFE = str.maketrans("-_", "+/")


class TokenInvalidError(ValueError):
    """The value is not one made with this key (forged, altered, truncated, foreign)."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Mac:
    """HMAC-SHA256 under one key (base64url), the key set up once: each MAC starts from a
    copy of the keyed state, where ``hmac.digest`` has OpenSSL look the algorithm up and
    key it again on every call."""

    __slots__ = ("_keyed",)

    def __init__(self, key: bytes) -> None:
        self._keyed = hmac.new(key, digestmod=_DIGEST)

    def __call__(self, signed: str) -> str:
        mac = self._keyed.copy()
        mac.update(signed.encode("ascii"))
        return _b64url(mac.digest())


def _verified_part(value: str, mac: Mac) -> str:
    """The signed text of ``value`` (everything before its last ``.``) once its MAC is
    the one ``mac`` makes."""
    if len(value) > MAX_CHARS or not value.isascii():
        raise TokenInvalidError("too long or not ASCII")
    signed, dot, claimed = value.rpartition(".")
    if not dot or not hmac.compare_digest(claimed, mac(signed)):
        raise TokenInvalidError("MAC does not match")
    return signed


@dataclass(frozen=True, slots=True)
class _UnderKey:
    """Values MAC'd under one key: the key out of reprs, its HMAC state set up once."""

    key: bytes = field(repr=False)
    _mac: Mac = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_mac", Mac(self.key))


@dataclass(frozen=True, slots=True)
class Hs256Jwt(_UnderKey):
    """Compact HS256 JWTs under one key."""

    def encode(self, claims: dict[str, Any]) -> str:
        payload = json.dumps(claims, ensure_ascii=False, separators=(",", ":")).encode()
        signed = f"{_JWT_HEADER}.{_b64url(payload)}"
        return f"{signed}.{self._mac(signed)}"

    def decode(self, value: str) -> dict[str, Any]:
        """The claims of a JWT this key signed; :class:`TokenInvalidError` otherwise."""
        signed = _verified_part(value, self._mac)
        header, dot, payload = signed.partition(".")
        if not dot or "." in payload:
            raise TokenInvalidError("not a compact JWS")
        try:
            declared = json.loads(_unb64url(header))
            claims = json.loads(_unb64url(payload))
        except (ValueError, UnicodeError, RecursionError) as exc:
            raise TokenInvalidError("header or claims are not JSON") from exc
        # Signed with our key, hence written by a replica of this service: still, only
        # the algorithm it is checked with is accepted.
        if not isinstance(declared, dict) or declared.get("alg") != "HS256":
            raise TokenInvalidError("not an HS256 JWT")
        if not isinstance(claims, dict):
            raise TokenInvalidError("claims are not a JSON object")
        return claims


@dataclass(frozen=True, slots=True)
class ChallengeCookie(_UnderKey):
    """``/auth`` cookies under one key."""

    @staticmethod
    def check_replica(replica: str | None) -> None:
        if replica is not None and not _REPLICA.fullmatch(replica):
            raise ValueError("a replica id is 1 to 64 letters, digits, '-' or '_'")

    def encode(self, nonce: str, expires_at: int, replica: str | None) -> str:
        """A cookie for ``nonce`` (standard base64, as the client sees it) expiring at
        ``expires_at``, issued by ``replica``."""
        self.check_replica(replica)
        safe_nonce = nonce.translate(_TO_URLSAFE).rstrip("=")
        issuer = _NO_REPLICA if replica is None else replica
        signed = f"{_CHALLENGE_PREFIX}.{expires_at:d}.{safe_nonce}.{issuer}"
        return f"{signed}.{self._mac(signed)}"

    @staticmethod
    def looks_like_one(value: str) -> bool:
        """Whether ``value`` has this format (not whether it is genuine)."""
        return value.startswith(_CHALLENGE_PREFIX + ".") and len(value) <= MAX_CHARS

    def decode(self, value: str) -> tuple[str, int, str | None]:
        """Nonce, expiry and replica of a cookie this key made; :class:`TokenInvalidError`
        otherwise."""
        fields = _verified_part(value, self._mac).split(".")
        if len(fields) != 4 or fields[0] != _CHALLENGE_PREFIX or not fields[1].isdigit():
            raise TokenInvalidError("not a challenge cookie")
        _, expires_at, nonce, replica = fields
        try:
            raw = base64.b64decode(nonce.translate(_FROM_URLSAFE) + "=" * (-len(nonce) % 4))
        except (binascii.Error, ValueError) as exc:
            raise TokenInvalidError("the nonce is not base64") from exc
        return (
            base64.b64encode(raw).decode(),
            int(expires_at),
            None if replica == _NO_REPLICA else replica,
        )
