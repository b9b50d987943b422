"""A KBS client that behaves as CoCo's stock one (guest-components ``kbs_protocol``).

Written from kbs_protocol's ``rcar_client.rs``, ``keypair.rs`` and kbs-types, without
any KubeTEE code, so a test passes only if the service speaks the protocol as the stock
client does:

- ``POST /kbs/v0/auth`` ``{"version": "0.4.0", "tee": "sgx", "extra-params": ...}``
  (``{"supported-hash-algorithms": [...]}`` as current kbs_protocol sends, or ``""``);
  the hash is the Challenge's ``selected-hash-algorithm``, else SHA-384;
- the runtime-data digest: hash of the JCS (RFC 8785) of ``{"tee-pubkey", "nonce",
  "additional-evidence": ""}``, zero padded to 64 bytes by the SGX attester;
- the SGX attester's evidence ``{"quote": base64}``, composite with
  ``"additional_evidence": ""``; init-data ``{"format": "toml", "body": <toml>}``;
- the session in reqwest's cookie store; the token JSON ``{"token"}`` whose claims are
  read for ``exp``;
- resources at ``/kbs/v0/resource/<repository>/<type>/<tag>``, a 401 answered by one new
  handshake; the JWE decrypted as kbs-types does: the protected header parsed and
  re-serialized (``alg``, ``enc``, then the other members sorted) to make the AAD.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import rfc8785
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap

Attester = Callable[[bytes], Awaitable[bytes]]
"""Report data (64 bytes) -> the enclave's quote, as the SGX attester gets one."""

HASHES = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
CURRENT_EXTRA_PARAMS: dict[str, Any] = {"supported-hash-algorithms": ["sha256", "sha384", "sha512"]}


class StockClientError(Exception):
    def __init__(self, step: str, status: int, body: str) -> None:
        super().__init__(f"{step}: HTTP {status}: {body}")
        self.step = step
        self.status = status
        self.body = body


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def serde_header(header: dict[str, Any]) -> bytes:
    """kbs-types ``ProtectedHeader`` re-serialized by serde_json: alg, enc, then the
    flattened other fields in BTreeMap (sorted) order, compact."""
    others = {key: header[key] for key in sorted(header) if key not in {"alg", "enc"}}
    ordered = {"alg": header["alg"], "enc": header["enc"], **others}
    return json.dumps(ordered, separators=(",", ":"), sort_keys=False).encode()


class StockKbsClient:
    def __init__(
        self,
        base_url: str,
        ssl_context: ssl.SSLContext,
        attester: Attester,
        *,
        initdata_toml: str | None,
        extra_params: Any = None,
        keep_auth_cookie: bool = False,
    ) -> None:
        self._url = base_url.rstrip("/") + "/kbs/v0"
        self._ssl = ssl_context
        self._attester = attester
        self._initdata = initdata_toml
        self._extra_params = CURRENT_EXTRA_PARAMS if extra_params is None else extra_params
        # keep_auth_cookie: a client that never takes the cookie /attest sets (the protocol
        # keeps the /auth cookie valid for resources).
        self._keep_auth_cookie = keep_auth_cookie
        jar: aiohttp.abc.AbstractCookieJar = (
            aiohttp.DummyCookieJar() if keep_auth_cookie else aiohttp.CookieJar(unsafe=True)
        )
        self._http = aiohttp.ClientSession(cookie_jar=jar)
        self._auth_cookie = ""
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.token: str | None = None
        self.token_exp: int | None = None
        self.requests: list[tuple[str, str, Any]] = []

    async def close(self) -> None:
        await self._http.close()

    def _headers(self) -> dict[str, str]:
        if self._keep_auth_cookie and self._auth_cookie:
            return {"Cookie": f"kbs-session-id={self._auth_cookie}"}
        return {}

    def tee_pubkey(self) -> dict[str, str]:
        numbers = self._key.public_key().public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "alg": "ECDH-ES+A256KW",
            "x": _b64url(numbers.x.to_bytes(32, "big")),
            "y": _b64url(numbers.y.to_bytes(32, "big")),
        }

    async def _post(self, step: str, body: dict[str, Any]) -> Any:
        self.requests.append(("POST", step, body))
        async with self._http.post(
            f"{self._url}/{step}", json=body, ssl=self._ssl, headers=self._headers()
        ) as response:
            text = await response.text()
            if response.status != 200:
                raise StockClientError(step, response.status, text)
            if step == "auth":
                self._auth_cookie = response.cookies["kbs-session-id"].value
            return json.loads(text)

    async def rcar_handshake(self) -> None:
        request = {"version": "0.4.0", "tee": "sgx", "extra-params": self._extra_params}
        challenge = await self._post("auth", request)
        extra = challenge.get("extra-params")
        selected = extra.get("selected-hash-algorithm") if isinstance(extra, dict) else None
        digest = HASHES[str(selected or "sha384").lower()]
        runtime_data = {"nonce": challenge["nonce"], "tee-pubkey": self.tee_pubkey()}
        primary = {
            "tee-pubkey": runtime_data["tee-pubkey"],
            "nonce": runtime_data["nonce"],
            "additional-evidence": "",
        }
        report_data = digest(rfc8785.dumps(primary)).digest().ljust(64, b"\0")
        quote = await self._attester(report_data)
        attestation: dict[str, Any] = {
            "init-data": (
                {"format": "toml", "body": self._initdata} if self._initdata is not None else None
            ),
            "runtime-data": runtime_data,
            "tee-evidence": {
                "primary_evidence": {"quote": base64.standard_b64encode(quote).decode()},
                "additional_evidence": "",
            },
        }
        response = await self._post("attest", attestation)
        self.token = str(response["token"])
        claims = json.loads(_unb64url(self.token.split(".")[1]))
        self.token_exp = claims.get("exp")

    async def get_resource(self, repository: str, kind: str, tag: str) -> bytes:
        if self.token is None:
            await self.rcar_handshake()
        for _ in range(2):
            url = f"{self._url}/resource/{repository}/{kind}/{tag}"
            self.requests.append(("GET", url, None))
            async with self._http.get(url, ssl=self._ssl, headers=self._headers()) as response:
                text = await response.text()
                if response.status == 200:
                    return self.decrypt(json.loads(text))
                if response.status != 401:
                    raise StockClientError("resource", response.status, text)
            await self.rcar_handshake()
        raise StockClientError("resource", 401, "unauthorized after a new handshake")

    def decrypt(self, response: dict[str, Any]) -> bytes:
        header = json.loads(_unb64url(response["protected"]))
        if (header["alg"], header["enc"]) != ("ECDH-ES+A256KW", "A256GCM"):
            raise ValueError(f"unsupported JWE {header['alg']}/{header['enc']}")
        epk = header["epk"]
        if epk["crv"] != "P-256":
            raise ValueError("unmatched curve")
        peer = ec.EllipticCurvePublicNumbers(
            int.from_bytes(_unb64url(epk["x"]), "big"),
            int.from_bytes(_unb64url(epk["y"]), "big"),
            ec.SECP256R1(),
        ).public_key()
        shared = self._key.exchange(ec.ECDH(), peer)
        other_info = (
            len(b"ECDH-ES+A256KW").to_bytes(4, "big")
            + b"ECDH-ES+A256KW"
            + bytes(4)
            + bytes(4)
            + (256).to_bytes(4, "big")
        )
        kek = ConcatKDFHash(hashes.SHA256(), 32, other_info).derive(shared)
        cek = aes_key_unwrap(kek, _unb64url(response["encrypted_key"]))
        aad = _b64url(serde_header(header)).encode()
        sealed = _unb64url(response["ciphertext"]) + _unb64url(response["tag"])
        return AESGCM(cek).decrypt(_unb64url(response["iv"]), sealed, aad)


def initdata_toml(namespace: str, pod: str, uid: str) -> str:
    """An initdata document as a user writes one (comments and spacing of their own)."""
    return (
        "# initdata of one KubeTEE replica\n"
        'version = "0.1.0"\n'
        'algorithm = "sha384"\n\n'
        "[data]\n"
        f'"kubetee.io/namespace" = "{namespace}"\n'
        f"\"kubetee.io/pod\" = '{pod}'\n"
        f'"kubetee.io/pod-uid" = "{uid}"\n'
    )


def config_id(toml: str) -> bytes:
    """What the host launches the enclave with: the initdata digest, zero padded."""
    return hashlib.sha384(toml.encode()).digest().ljust(64, b"\0")
