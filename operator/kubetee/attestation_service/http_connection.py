"""The service's HTTP/1.1 connections: llhttp (through ``httptools``, the parser of
uvicorn and Node.js) reads the requests, the application answers each, one write per
answer.

Why not aiohttp's server: on the service's kept connections it cost about three times
a bare protocol's CPU per request (task hops, request and response objects, a stream per
body), the larger part of an attestation's time (docs/attestation.md, "Throughput").

A connection
- answers its requests in order, one at a time; pipelined requests wait their turn (at
  most ``_MAX_WAITING``, then it stops reading until they are answered);
- refuses, with a problem answer and then closing: a request head over
  ``MAX_HEAD_BYTES`` (431), a body over the application's limit (413, told by
  ``Content-Length`` before the body is read), bytes llhttp refuses (400: request
  smuggling shapes such as ``Content-Length`` with ``Transfer-Encoding`` included),
  CONNECT (400), an expectation other than ``100-continue`` (417);
- ignores ``Upgrade`` (answers the request, then closes: llhttp reads no further);
- answers ``Expect: 100-continue`` before the body is sent;
- keeps alive as the request says (HTTP/1.0 closes unless it asks otherwise) and says
  ``Connection: close`` when it will close;
- closes when no whole request arrives within ``keepalive_timeout`` of its opening or
  of its last answer (a request sent piece by piece does not extend it);
- answers a handler's unexpected error with 500 (the traceback goes to the log only);
- when the client goes away, drops the answer but lets the handler finish (what it
  records, such as a nonce's outcome, is not left half done).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Awaitable
from typing import Protocol

import httptools

from kubetee.attestation_service.http_messages import (
    HttpRequest,
    HttpResponse,
    add_header,
    response_bytes,
)

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
_MAX_WAITING = 16  # pipelined requests held before the connection stops reading


class Application(Protocol):
    """What a connection serves: answers to requests, and the shape of its refusals."""

    max_body_bytes: int

    def __call__(self, request: HttpRequest) -> Awaitable[HttpResponse]: ...

    def refusal(self, status: int, detail: str) -> HttpResponse:
        """The answer to a request refused before it reached a handler."""
        ...


class _KeepAlive(enum.Enum):
    YES = enum.auto()
    SAID = enum.auto()  # yes, and the answer must say so (HTTP/1.0)
    NO = enum.auto()


class _RefusedError(Exception):
    """Raised from a parser callback to stop reading: the request is refused."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class HttpConnection(asyncio.Protocol):
    def __init__(self, app: Application, *, keepalive_timeout: float) -> None:
        self._app = app
        self._keepalive_timeout = keepalive_timeout
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        # Whole requests (with whether the connection stays open after their answer) and
        # refusals, in the order they arrived.
        self._waiting: deque[tuple[HttpRequest, _KeepAlive] | _RefusedError] = deque()
        self._answering = False  # a handler runs (or its answer is being written)
        self._answer_task: asyncio.Task[None] | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._closing = False
        self._idle_timer: asyncio.TimerHandle | None = None
        self.closed: asyncio.Future[None] = self._loop.create_future()
        # The request being read.
        self._in_head = True
        self._head_bytes = 0
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_bytes = 0

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's TLS transport
        self._arm_idle_timer()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if self._in_head:  # llhttp keeps an unfinished header line whole: count it here
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as error:
            refused = error.__context__
            if not isinstance(refused, _RefusedError):
                raise
            self._stop_reading(refused)
        except httptools.HttpParserUpgrade:
            self._ignore_upgrade()
        except httptools.HttpParserError as error:
            self._stop_reading(_RefusedError(400, f"malformed HTTP/1.1 request: {_reason(error)}"))
        else:
            if self._in_head and self._head_bytes > MAX_HEAD_BYTES:
                self._stop_reading(_RefusedError(431, "the request head is too large"))
        self._answer_next()

    def eof_received(self) -> bool | None:
        self._closing = True
        return None  # close (TLS cannot keep a half-closed connection)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._answer_next()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._transport = None
        self._waiting.clear()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if not self.closed.done():
            self.closed.set_result(None)

    # -- httptools callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_HEAD_BYTES:
            raise _RefusedError(431, "the request target is too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        add_header(self._headers, name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        length = self._headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._app.max_body_bytes:
            raise _RefusedError(413, f"the body is over {self._app.max_body_bytes} bytes")
        expect = self._headers.get("expect")
        if expect is not None:
            if expect.lower() != "100-continue":
                raise _RefusedError(417, "only the expectation 100-continue is supported")
            # Only when no earlier answer is due (it would come first) and the client
            # speaks HTTP/1.1 (RFC 9110 10.1.1: an HTTP/1.0 expectation is ignored).
            idle = not self._waiting and not self._answering
            if idle and self._transport is not None and self._parser.get_http_version() == "1.1":
                self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._app.max_body_bytes:
            raise _RefusedError(413, f"the body is over {self._app.max_body_bytes} bytes")
        self._body.append(body)

    def on_message_complete(self) -> None:
        try:
            path = httptools.parse_url(self._url).path or b""
        except httptools.HttpParserInvalidURLError:
            raise _RefusedError(400, "the request target is not a path") from None
        request = HttpRequest(
            self._parser.get_method().decode("ascii"),
            path.decode("latin-1"),
            self._headers,
            b"".join(self._body),
            transport=self._transport,
        )
        if not self._parser.should_keep_alive():
            keep_alive = _KeepAlive.NO
        elif self._parser.get_http_version() == "1.0":
            keep_alive = _KeepAlive.SAID  # HTTP/1.0 closes unless the answer says otherwise
        else:
            keep_alive = _KeepAlive.YES
        self._waiting.append((request, keep_alive))
        self._in_head = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if len(self._waiting) >= _MAX_WAITING and self._transport is not None:
            self._transport.pause_reading()
            self._reading_paused = True

    # -- answering ---------------------------------------------------------------------

    def _ignore_upgrade(self) -> None:
        """RFC 9110 7.8: a server may ignore ``Upgrade``. The request is answered as any
        other; llhttp reads nothing after it (it would be the other protocol's), so the
        connection closes after the answer."""
        last = self._waiting[-1] if self._waiting else None
        if not isinstance(last, tuple):  # CONNECT and the like: no whole request
            self._stop_reading(_RefusedError(400, "protocol upgrades are not supported"))
            return
        self._waiting[-1] = (last[0], _KeepAlive.NO)
        self._closing = True

    def _stop_reading(self, refused: _RefusedError) -> None:
        """Answer what arrived whole, then ``refused``, then close."""
        self._waiting.append(refused)
        self._closing = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _answer_next(self) -> None:
        if self._answering or self._writing_paused or not self._waiting:
            return
        item = self._waiting.popleft()
        if self._reading_paused and self._transport is not None and not self._closing:
            self._transport.resume_reading()
            self._reading_paused = False
        if isinstance(item, _RefusedError):
            self._write(self._app.refusal(item.status, item.detail), head_only=False, close=True)
            return
        self._answering = True
        # Kept: the loop holds only weak references to tasks.
        self._answer_task = self._loop.create_task(self._answer(*item))

    async def _answer(self, request: HttpRequest, keep_alive: _KeepAlive) -> None:
        try:
            response = await self._app(request)
        except Exception:
            log.exception("unexpected error answering %s", request.method)
            response = self._app.refusal(500, "internal error; the service logged it")
        self._answering = False
        close = keep_alive is _KeepAlive.NO or (self._closing and not self._waiting)
        said = keep_alive is _KeepAlive.SAID and not close
        self._write(response, head_only=request.method == "HEAD", close=close, say_keep_alive=said)
        if not close:
            self._answer_next()

    def _write(
        self, response: HttpResponse, *, head_only: bool, close: bool, say_keep_alive: bool = False
    ) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        connection = "close" if close else "keep-alive" if say_keep_alive else None
        transport.write(response_bytes(response, connection=connection, head_only=head_only))
        if close:
            self._closing = True
            transport.close()
        elif not self._waiting:
            self._arm_idle_timer()

    def close_when_idle(self) -> None:
        """Close now if no request is being answered, else after its answer (requests
        that arrive meanwhile are not read)."""
        self._closing = True
        self._waiting.clear()
        if not self._answering and self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _arm_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._idle_timer = self._loop.call_later(self._keepalive_timeout, self._idle)

    def _idle(self) -> None:
        self._idle_timer = None
        if self._transport is not None and not self._answering and not self._waiting:
            self._closing = True
            self._transport.close()


def _reason(error: Exception) -> str:
    """llhttp's words for what it refused (they name no request data)."""
    return str(error)[:120] or type(error).__name__
