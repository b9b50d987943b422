"""An asyncio KBS client: one kept-alive connection for any number of attestation rounds.

A round's session lives in the ``kbs-session-id`` cookie the service sets (at ``auth``,
and at ``attest`` if it sets a new one), kept by the client itself (see
:mod:`.session_cookie`; no general cookie jar) and sent with ``attest`` and the resource
requests, all over one kept-alive connection (to one process of one replica of the
service, which alone can judge the nonce it issued). ``auth`` starts a new round: it
forgets the last round's cookie. A :class:`KbsClient` kept for the runtime's life reuses
its connection for every re-attestation (one TLS handshake instead of one per round) for
as long as the service keeps it open (its keep-alive timeout); once the service has
closed it, the next request opens a new one. A request that the closing overtook fails
with :class:`KbsConnectionLostError`: ``auth`` (which changes nothing on the service) is
then sent once more on a new connection, a later step ends the round (its nonce belongs
to the lost connection's process; the caller starts a new round).

Answers map to typed errors: 5xx :class:`KbsUnavailableError`, 4xx
:class:`KbsRefusedError` with the problem's reason, a redirect (not followed: the
cookie is for this service only) or a body that is not the step's JSON
:class:`KbsProtocolError`.
"""

from __future__ import annotations

import json
import ssl
import time
from types import TracebackType
from typing import Self, TypeVar

import aiohttp
from pydantic import BaseModel, JsonValue, ValidationError
from yarl import URL

from enclave_runtime.kbs_protocol.errors import (
    KbsConnectionLostError,
    KbsProtocolError,
    KbsRefusedError,
    KbsUnavailableError,
)
from enclave_runtime.kbs_protocol.models import (
    KBS_PROTOCOL_VERSION,
    SESSION_COOKIE,
    TEE_SGX,
    Attestation,
    Challenge,
    ErrorInformation,
    JweResponse,
    Request,
)
from enclave_runtime.kbs_protocol.request_deadlines import RequestDeadlines
from enclave_runtime.kbs_protocol.session_cookie import session_cookie_after

_KBS_PREFIX = "/kbs/v0"
_JSON = "application/json"
_KEPT_URLS = 64

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
        # Parsed once: a round asks for the same few URLs (auth, attest, its secrets).
        self._urls: dict[str, URL] = {}
        self._session_cookie: str | None = None
        # Each request's limit, kept by this client's one timer (aiohttp's timeout is off:
        # it would arm a timer per request).
        self._deadlines = RequestDeadlines(timeout_seconds)
        self._session = aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(),  # the one cookie is kept by this client
            timeout=aiohttp.ClientTimeout(total=None),
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
        self._deadlines.close()
        await self._session.close()

    @property
    def session_cookie(self) -> str | None:
        """The ``kbs-session-id`` this client sends now (``None`` before ``auth``)."""
        return self._session_cookie

    async def auth(self, extra_params: JsonValue = "") -> Challenge:
        """Start a round: ask for a challenge; ``extra_params`` as kbs_protocol sends them
        (none for SGX). The last round's session cookie is forgotten first."""
        self._session_cookie = None
        if extra_params == "":
            payload = _PLAIN_AUTH_BODY
        else:
            payload = _json_body(
                Request(version=KBS_PROTOCOL_VERSION, tee=TEE_SGX, extra_params=extra_params)
            )
        try:
            raw = await self._call("auth", "POST", "/auth", payload)
        except KbsConnectionLostError:
            # The service closed the kept connection as the request went out: /auth
            # changes nothing there, so it is sent again, on a new connection.
            raw = await self._call("auth", "POST", "/auth", payload)
        return _parse(Challenge, raw, "auth")

    async def attest(self, attestation: Attestation) -> str:
        """Send the evidence; returns the attestation token the service issued."""
        raw = await self._call("attest", "POST", "/attest", _json_body(attestation))
        body: JsonValue = None
        if raw:
            try:
                body = json.loads(raw)
            except (ValueError, RecursionError):
                raise KbsProtocolError("attest: response is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("token"), str):
            raise KbsProtocolError("attest response carries no token")
        return str(body["token"])

    async def resource(self, repository: str, kind: str, tag: str) -> JweResponse:
        path = f"/resource/{repository}/{kind}/{tag}"
        raw = await self._call(f"resource {repository}/{kind}/{tag}", "GET", path, None)
        return _parse(JweResponse, raw, "resource")

    async def _call(self, step: str, method: str, path: str, payload: bytes | None) -> bytes:
        """The response body of a 2xx answer (the session cookie taken from it)."""
        url = self._urls.get(path)
        if url is None:
            url = URL(f"{self._base_url}{_KBS_PREFIX}{path}")
            if len(self._urls) < _KEPT_URLS:
                self._urls[path] = url
        headers = {"Content-Type": _JSON} if payload is not None else {}
        if self._session_cookie is not None:
            headers["Cookie"] = f"{SESSION_COOKIE}={self._session_cookie}"
        try:
            with self._deadlines.limit():
                # Not followed: the session cookie is this service's alone, and a KBS
                # never redirects (a jar kept cookies to their host; a header would go
                # anywhere).
                response = await self._session.request(
                    method, url, data=payload, headers=headers, allow_redirects=False
                )
                # Released here rather than by ``async with``, whose exit also waits for
                # the request's body writer: reading the body has waited for it already.
                try:
                    return await self._answer(step, response)
                finally:
                    response.release()
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionResetError) as exc:
            raise KbsConnectionLostError(
                f"{step}: the connection to the attestation service closed: {exc}"
            ) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KbsUnavailableError(
                f"{step}: cannot reach the attestation service: {exc}"
            ) from exc

    async def _answer(self, step: str, response: aiohttp.ClientResponse) -> bytes:
        """The body of a 2xx answer, the session cookie taken from it; a typed error for
        any other status."""
        if response.status >= 500:
            raise KbsUnavailableError(f"{step}: attestation service answered {response.status}")
        if response.status >= 400:
            raise _refusal(step, response.status, await response.read())
        if response.status >= 300:
            raise KbsProtocolError(
                f"{step}: attestation service redirected ({response.status}); "
                "a KBS answers at its own URL: configure that one"
            )
        set_cookies = response.headers.getall(aiohttp.hdrs.SET_COOKIE, ())
        if set_cookies:
            self._session_cookie = session_cookie_after(
                set_cookies, self._session_cookie, time.time()
            )
        return await response.read()


def _refusal(step: str, status: int, raw: bytes) -> KbsRefusedError:
    try:
        problem = ErrorInformation.model_validate_json(raw)
    except ValidationError:
        return KbsRefusedError(step, status, "Unknown", f"HTTP {status} without problem details")
    reason = problem.reason or problem.type.rsplit("/", 1)[-1]
    return KbsRefusedError(step, status, reason, problem.detail)


def _json_body(message: BaseModel) -> bytes:
    """The message as sent on the wire (``to_wire``'s JSON, serialized in one step)."""
    return message.model_dump_json(by_alias=True, exclude_none=True).encode()


# The /auth body of every round (SGX sends no extra-params), serialized once.
_PLAIN_AUTH_BODY = _json_body(Request(version=KBS_PROTOCOL_VERSION, tee=TEE_SGX))


def _parse(model: type[_M], raw: bytes, step: str) -> _M:
    try:
        return model.model_validate_json(raw or b"null")
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            raise KbsProtocolError(f"{step}: response is not JSON") from None
        raise KbsProtocolError(
            f"{step}: malformed {model.__name__} ({exc.error_count()} errors)"
        ) from None
