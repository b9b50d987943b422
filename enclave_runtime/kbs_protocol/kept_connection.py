"""One kept-alive HTTP/1.1 connection to one service: a request at a time, each answer
read whole by llhttp (``httptools``, the parser uvicorn and Node.js use).

The KBS client needs little of a general HTTP client: one host, one request at a time,
small JSON bodies read whole, no redirects, no cookie jar, no compression, no proxy.
aiohttp's client made, for each request, request and response objects, a payload, a body
writer task, a stream reader and a connection lease around the same protocol work: about
a fifth of the runtime's CPU per attestation (docs/attestation.md). Here a request is one
``write`` of its head and body, and its answer one future that the protocol completes.

What a server may answer is handled as HTTP/1.1 says: a body delimited by
``Content-Length``, by chunks, or by the connection's end; interim (1xx) answers skipped;
``Connection: close`` (or HTTP/1.0 without keep-alive) ends the connection after the
answer. What it may not is refused: an answer larger than ``max_answer_bytes`` or with
more than 64 KiB of headers, one llhttp cannot parse, data no request asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from typing import cast

import httptools
from yarl import URL

_MAX_HEADER_BYTES = 64 * 1024
# A Kubernetes Secret holds at most 1 MiB; its JWE (base64url) about 4/3 of that.
DEFAULT_MAX_ANSWER_BYTES = 8 * 1024 * 1024
# Answers that never carry a body, whatever their headers say (RFC 9112, 6.3).
_NO_BODY = frozenset({204, 304})
_GOODBYE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    set_cookies: tuple[str, ...]
    body: bytes


class ConnectionLostError(Exception):
    """The connection closed before the answer was complete (or before any of it)."""


class UnreachableError(Exception):
    """No connection could be opened (refused, unresolvable, TLS failed)."""


class MalformedAnswerError(Exception):
    """The service's bytes are not an HTTP/1.1 answer this client accepts."""


def _head_too_large() -> MalformedAnswerError:
    return MalformedAnswerError(f"answer head larger than {_MAX_HEADER_BYTES} bytes")


class KeptConnection:
    """Requests to the host of ``url`` (``http`` or ``https``) over one connection,
    opened when first needed and again once the server has closed it or it has been
    idle ``keepalive_seconds``."""

    def __init__(
        self,
        url: URL,
        *,
        ssl_context: ssl.SSLContext | None = None,
        keepalive_seconds: float = 15.0,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
        if url.scheme not in {"http", "https"} or not url.raw_host:
            raise ValueError(f"not an http(s)://host[:port] URL: {str(url)!r}")
        self._host = url.raw_host
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._tls = (ssl_context or ssl.create_default_context()) if url.scheme == "https" else None
        self._head_start = f"\r\nHost: {url.host_port_subcomponent}\r\n"
        self._keepalive = keepalive_seconds
        self._max_answer_bytes = max_answer_bytes
        self._reader: _AnswerReader | None = None
        self._idle_since = 0.0
        self._lock = asyncio.Lock()

    async def request(
        self, method: str, target: str, headers: str = "", body: bytes | None = None
    ) -> Answer:
        """Send one request and read its whole answer. ``target`` is the path (and query)
        as sent; ``headers`` are complete ``Name: value\\r\\n`` lines."""
        async with self._lock:
            return await self._exchange(method, target, headers, body)

    async def _exchange(self, method: str, target: str, headers: str, body: bytes | None) -> Answer:
        loop = asyncio.get_running_loop()
        reader = self._reader
        if (
            reader is None
            or not reader.reusable
            or reader.loop is not loop
            # Idle past this side's keep-alive: not trusted to be open any more.
            or loop.time() - self._idle_since > self._keepalive
        ):
            reader = await self._connect(loop)  # which closes the one it replaces
        head = f"{method} {target} HTTP/1.1{self._head_start}{headers}"
        if body is not None:
            head = f"{head}Content-Length: {len(body)}\r\n"
        answer = reader.expect()
        reader.send(f"{head}\r\n".encode("latin-1") + (body or b""))
        try:
            result = await answer
        except BaseException:
            # Cancelled (a deadline) or failed mid-answer: what follows on the connection
            # is unknown, so it is not used again.
            reader.close()
            raise
        self._idle_since = loop.time()
        if not reader.reusable:
            reader.close()
        return result

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _AnswerReader:
        self.close()
        max_bytes = self._max_answer_bytes
        try:
            _, reader = await loop.create_connection(
                lambda: _AnswerReader(loop, max_bytes),
                self._host,
                self._port,
                ssl=self._tls,
                server_hostname=self._host if self._tls is not None else None,
            )
        except OSError as exc:  # refused, unresolvable (gaierror), TLS failed (SSLError)
            raise UnreachableError(str(exc) or type(exc).__name__) from exc
        self._reader = reader
        return reader

    def close(self) -> None:
        """Start closing the connection, if one is open (the next request opens a new
        one)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    async def aclose(self) -> None:
        """Close the connection and wait (at most a second) until it has closed: TLS
        says goodbye first, and an event loop that ended before would leave it half
        closed."""
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.aclose(_GOODBYE_SECONDS)


class _AnswerReader(asyncio.Protocol):
    """The connection's protocol: completes the awaited answer from llhttp's callbacks."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_answer_bytes: int) -> None:
        self.loop = loop
        self._max = max_answer_bytes
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._open = False
        self._keep_alive = False
        self._answer: asyncio.Future[Answer] | None = None
        self._error: Exception | None = None
        self._lost: asyncio.Future[None] = loop.create_future()
        # The answer being read (reset by _begin_message).
        self._status = 0
        self._delimited = False
        self._header_bytes = 0
        self._head_fed = 0
        self._size = 0
        self._cookies: list[str] = []
        self._body: list[bytes] = []

    @property
    def reusable(self) -> bool:
        return self._open and self._keep_alive and self._answer is None

    def expect(self) -> asyncio.Future[Answer]:
        self._answer = self.loop.create_future()
        self._keep_alive = False
        self._begin_message()
        return self._answer

    def send(self, data: bytes) -> None:
        if self._transport is None or not self._open:
            self._fail(ConnectionLostError("the connection closed before the request was sent"))
            return
        self._transport.write(data)

    def close(self) -> None:
        self._open = False
        if self._transport is not None and not self._transport.is_closing():
            with contextlib.suppress(RuntimeError):  # its event loop has ended already
                self._transport.close()
        self._fail(ConnectionLostError("the connection was closed"))

    async def aclose(self, seconds: float) -> None:
        self.close()
        if self._transport is None or self.loop is not asyncio.get_running_loop():
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._lost), seconds)
        except TimeoutError:
            self._transport.abort()

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TLS transport has asyncio.Transport's methods but not its class.
        self._transport = cast(asyncio.Transport, transport)
        self._open = True

    def data_received(self, data: bytes) -> None:
        if self._answer is None or self._answer.done():
            self._fail(MalformedAnswerError("the service sent data no request asked for"))
            self.close()
            return
        if not self._status:
            self._head_fed += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # 101 Switching Protocols: the KBS protocol never asks for another protocol.
            self._fail(MalformedAnswerError("not an HTTP/1.1 answer (it switches protocols)"))
            self.close()
            return
        except httptools.HttpParserError as exc:
            error = self._error or MalformedAnswerError(f"not an HTTP/1.1 answer ({exc})")
            self._fail(error)
            self.close()
            return
        # llhttp keeps a header it has not seen the end of: bounded here, not only once
        # it is whole.
        if not self._status and self._head_fed > _MAX_HEADER_BYTES:
            self._fail(_head_too_large())
            self.close()

    def eof_received(self) -> bool | None:
        return None  # the transport closes; connection_lost judges what was read

    def connection_lost(self, exc: Exception | None) -> None:
        self._open = False
        if not self._lost.done():
            self._lost.set_result(None)
        answer = self._answer
        if answer is None or answer.done():
            return
        if self._status and not self._delimited and self._status not in _NO_BODY:
            # A body delimited by the connection's end (RFC 9112, 6.3, last rule).
            self._complete(keep_alive=False)
            return
        self._fail(
            ConnectionLostError(
                "the connection closed in the middle of the answer"
                if self._status
                else "the connection closed before the answer"
            )
        )

    # -- llhttp's callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._answer is None:  # bytes after the answer, in the same read
            self._error = MalformedAnswerError("the service sent data no request asked for")
            raise self._error

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > _MAX_HEADER_BYTES:
            self._error = _head_too_large()
            raise self._error
        lowered = name.lower()
        if lowered == b"set-cookie":
            self._cookies.append(value.decode("latin-1"))
        elif lowered in (b"content-length", b"transfer-encoding"):
            self._delimited = True

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._max:
            self._error = MalformedAnswerError(f"answer larger than {self._max} bytes")
            raise self._error
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._status < 200:
            self._begin_message()  # an interim answer: the final one follows
            return
        self._complete(keep_alive=self._parser.should_keep_alive())

    # -- the answer -------------------------------------------------------------------

    def _begin_message(self) -> None:
        self._status = 0
        self._delimited = False
        self._header_bytes = 0
        self._head_fed = 0
        self._size = 0
        self._cookies = []
        self._body = []

    def _complete(self, *, keep_alive: bool) -> None:
        answer = self._answer
        self._answer = None
        self._keep_alive = keep_alive
        if answer is not None and not answer.done():
            answer.set_result(Answer(self._status, tuple(self._cookies), b"".join(self._body)))

    def _fail(self, error: Exception) -> None:
        answer = self._answer
        self._answer = None
        if answer is not None and not answer.done():
            answer.set_exception(error)
