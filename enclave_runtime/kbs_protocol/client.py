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
import re
import ssl
import time
from types import TracebackType
from typing import Self, TypeVar

from pydantic import BaseModel, JsonValue, ValidationError
from yarl import URL

from enclave_runtime.kbs_protocol.errors import (
    KbsConnectionLostError,
    KbsProtocolError,
    KbsRefusedError,
    KbsUnavailableError,
)
from enclave_runtime.kbs_protocol.kept_connection import (
    Answer,
    ConnectionLostError,
    KeptConnection,
    MalformedAnswerError,
    UnreachableError,
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
_KEPT_TARGETS = 64
_USER_AGENT = "User-Agent: kubetee-enclave-runtime\r\n"
_ACCEPT_HEADERS = f"{_USER_AGENT}Accept: application/json\r\n"
_JSON_HEADERS = f"{_ACCEPT_HEADERS}Content-Type: application/json\r\n"
# What would end or break the Cookie header line this client sends the value back in.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")

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
        base = URL(base_url.rstrip("/"))
        self._prefix = f"{base.raw_path.rstrip('/')}{_KBS_PREFIX}"
        # Quoted once: a round asks for the same few paths (auth, attest, its secrets).
        self._targets: dict[str, str] = {}
        self._session_cookie: str | None = None
        # Each request's limit, kept by this client's one timer.
        self._deadlines = RequestDeadlines(timeout_seconds)
        # One connection for the whole exchange: the service binds a nonce to the replica
        # that issued it, and one TLS handshake serves all three requests (and the next
        # rounds', while the connection lives). Redirects are not followed: the session
        # cookie is this service's alone, and a KBS never redirects.
        self.connection = KeptConnection(
            base.with_path("/"), ssl_context=ssl_context, keepalive_seconds=keepalive_seconds
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
        await self.connection.aclose()

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
        target = self._targets.get(path)
        if target is None:
            target = URL.build(path=f"{self._prefix}{path}").raw_path
            if len(self._targets) < _KEPT_TARGETS:
                self._targets[path] = target
        headers = _JSON_HEADERS if payload is not None else _ACCEPT_HEADERS
        if self._session_cookie is not None:
            headers = f"{headers}Cookie: {SESSION_COOKIE}={self._session_cookie}\r\n"
        try:
            with self._deadlines.limit():
                answer = await self.connection.request(method, target, headers, payload)
        except ConnectionLostError as exc:
            raise KbsConnectionLostError(
                f"{step}: the connection to the attestation service closed: {exc}"
            ) from exc
        except MalformedAnswerError as exc:
            raise KbsProtocolError(f"{step}: {exc}") from None
        except (UnreachableError, TimeoutError) as exc:
            raise KbsUnavailableError(
                f"{step}: cannot reach the attestation service: {str(exc) or 'no answer in time'}"
            ) from exc
        return self._answer(step, answer)

    def _answer(self, step: str, answer: Answer) -> bytes:
        """The body of a 2xx answer, the session cookie taken from it; a typed error for
        any other status."""
        status = answer.status
        if status >= 500:
            raise KbsUnavailableError(f"{step}: attestation service answered {status}")
        if status >= 400:
            raise _refusal(step, status, answer.body)
        if status >= 300:
            raise KbsProtocolError(
                f"{step}: attestation service redirected ({status}); "
                "a KBS answers at its own URL: configure that one"
            )
        if answer.set_cookies:
            cookie = session_cookie_after(answer.set_cookies, self._session_cookie, time.time())
            # Sent back as a header line: a value that could end it is not a session id.
            if cookie is not None and _CONTROL_CHARACTER.search(cookie):
                raise KbsProtocolError(f"{step}: the session cookie's value is malformed")
            self._session_cookie = cookie
        return answer.body


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
