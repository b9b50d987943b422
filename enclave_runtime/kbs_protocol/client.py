"""An asyncio KBS client: one kept-alive connection for any number of attestation rounds.

A round's session lives in the ``kbs-session-id`` cookie the service sets, kept by
aiohttp's cookie jar between ``auth``, ``attest`` and the resource requests, all sent
over one kept-alive connection (to one process of one replica of the service, which
alone can judge the nonce it issued). ``auth`` starts a new round: it forgets the last
round's cookie. A :class:`KbsClient` kept for the runtime's life reuses its
connection for every re-attestation (one TLS handshake instead of one per round) for
as long as the service keeps it open (its keep-alive timeout); once the service has
closed it, the next request opens a new one. A request that the closing overtook
fails with :class:`KbsConnectionLostError`: ``auth`` (which changes nothing on the
service) is then sent once more on a new connection, a later step ends the round
(its nonce belongs to the lost connection's process; the caller starts a new round).
"""

from __future__ import annotations

import ssl
from types import TracebackType
from typing import Self, TypeVar

import aiohttp
from pydantic import JsonValue, ValidationError

from enclave_runtime.kbs_protocol.errors import (
    KbsConnectionLostError,
    KbsProtocolError,
    KbsRefusedError,
    KbsUnavailableError,
)
from enclave_runtime.kbs_protocol.models import (
    KBS_PROTOCOL_VERSION,
    TEE_SGX,
    Attestation,
    Challenge,
    ErrorInformation,
    JweResponse,
    Request,
)

_KBS_PREFIX = "/kbs/v0"

_M = TypeVar("_M", Challenge, JweResponse)


class KbsClient:
    """Speaks the KBS protocol to ``base_url`` (``https://host:port``)."""

    def __init__(
        self,
        base_url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout_seconds: float = 30.0,
        keepalive_seconds: float = 15.0,
    ) -> None:
        """``keepalive_seconds``: how long this side keeps an idle connection for the next
        request (the service may close it sooner: see its keep-alive timeout)."""
        self._base_url = base_url.rstrip("/")
        # unsafe=True: the jar must keep cookies of IP-address hosts (loopback, Service IPs)
        self._session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
            # One connection for the whole exchange: the service binds a nonce to the
            # replica that issued it, and one TLS handshake serves all three requests
            # (and the next rounds', while the connection lives).
            connector=aiohttp.TCPConnector(
                ssl=ssl_context if ssl_context is not None else True,
                limit=1,
                keepalive_timeout=keepalive_seconds,
            ),
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._session.close()

    async def auth(self, extra_params: JsonValue = "") -> Challenge:
        """Start a round: ask for a challenge; ``extra_params`` as kbs_protocol sends them
        (none for SGX). The last round's session cookie is forgotten first."""
        self._session.cookie_jar.clear()
        request = Request(version=KBS_PROTOCOL_VERSION, tee=TEE_SGX, extra_params=extra_params)
        try:
            body = await self._call("auth", "POST", "/auth", request.to_wire())
        except KbsConnectionLostError:
            # The service closed the kept connection as the request went out: /auth
            # changes nothing there, so it is sent again, on a new connection.
            body = await self._call("auth", "POST", "/auth", request.to_wire())
        return _parse(Challenge, body, "auth")

    async def attest(self, attestation: Attestation) -> str:
        """Send the evidence; returns the attestation token the service issued."""
        body = await self._call("attest", "POST", "/attest", attestation.to_wire())
        if not isinstance(body, dict) or not isinstance(body.get("token"), str):
            raise KbsProtocolError("attest response carries no token")
        return str(body["token"])

    async def resource(self, repository: str, kind: str, tag: str) -> JweResponse:
        path = f"/resource/{repository}/{kind}/{tag}"
        body = await self._call(f"resource {repository}/{kind}/{tag}", "GET", path, None)
        return _parse(JweResponse, body, "resource")

    async def _call(
        self, step: str, method: str, path: str, payload: dict[str, JsonValue] | None
    ) -> JsonValue:
        url = f"{self._base_url}{_KBS_PREFIX}{path}"
        try:
            async with self._session.request(method, url, json=payload) as response:
                if response.status >= 500:
                    raise KbsUnavailableError(
                        f"{step}: attestation service answered {response.status}"
                    )
                if response.status >= 400:
                    raise _refusal(step, response.status, await response.read())
                if response.content_length == 0:
                    return None
                try:
                    result: JsonValue = await response.json(content_type=None)
                except ValueError as exc:
                    raise KbsProtocolError(f"{step}: response is not JSON") from exc
                return result
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionResetError) as exc:
            raise KbsConnectionLostError(
                f"{step}: the connection to the attestation service closed: {exc}"
            ) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KbsUnavailableError(
                f"{step}: cannot reach the attestation service: {exc}"
            ) from exc


def _refusal(step: str, status: int, raw: bytes) -> KbsRefusedError:
    try:
        problem = ErrorInformation.model_validate_json(raw)
    except ValidationError:
        return KbsRefusedError(step, status, "Unknown", f"HTTP {status} without problem details")
    reason = problem.reason or problem.type.rsplit("/", 1)[-1]
    return KbsRefusedError(step, status, reason, problem.detail)


def _parse(model: type[_M], body: JsonValue, step: str) -> _M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise KbsProtocolError(
            f"{step}: malformed {model.__name__} ({exc.error_count()} errors)"
        ) from exc
