"""The service's HTTP requests and responses as values: what a handler reads and returns.

A request arrives whole (head and body: the service's bodies are small and bounded), so a
handler reads ``body`` without awaiting. Header names are lower case; a repeated header's
values are joined as RFC 9110 5.3 says (``Cookie`` with ``; ``, RFC 6265 5.4).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus


@dataclass(slots=True)
class HttpRequest:
    method: str
    path: str  # the request target's path, percent-encoded as sent, without the query
    headers: dict[str, str]
    body: bytes = b""
    # The decoded path segments a route's ``{name}`` parts matched.
    match_info: dict[str, str] = field(default_factory=dict)
    # The connection it came on (its peer, for logs and tests).
    transport: asyncio.BaseTransport | None = None


def add_header(headers: dict[str, str], name: bytes, value: bytes) -> None:
    """Add one received header line to ``headers`` (name lower-cased; repeats joined)."""
    key = name.decode("latin-1").lower()
    text = value.decode("latin-1")
    previous = headers.get(key)
    if previous is None:
        headers[key] = text
    else:
        headers[key] = previous + ("; " if key == "cookie" else ", ") + text


@dataclass(slots=True)
class HttpResponse:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    # Further header lines (Set-Cookie, Allow), in order.
    headers: list[tuple[str, str]] = field(default_factory=list)

    def add_header(self, name: str, value: str) -> None:
        if "\r" in value or "\n" in value:  # it would end the header line early
            raise ValueError(f"the {name} header value contains a line break")
        self.headers.append((name, value))


_REASONS = {status.value: status.phrase for status in HTTPStatus}


class _HttpDate:
    """The ``Date`` header's value (RFC 9110 6.6.1), formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._text = formatdate(second, usegmt=True)
        return self._text


_date = _HttpDate()


def response_bytes(
    response: HttpResponse, *, connection: str | None = None, head_only: bool = False
) -> bytes:
    """The response on the wire (HTTP/1.1) with the ``Connection`` header ``connection``
    (none: the connection stays open, as HTTP/1.1 implies); ``head_only`` for HEAD."""
    lines = [
        f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}\r\n"
        f"Content-Type: {response.content_type}\r\n"
        f"Content-Length: {len(response.body)}\r\n"
        f"Date: {_date.now()}\r\n"
    ]
    lines.extend(f"{name}: {value}\r\n" for name, value in response.headers)
    if connection is not None:
        lines.append(f"Connection: {connection}\r\n")
    lines.append("\r\n")
    head = "".join(lines).encode("latin-1")
    return head if head_only else head + response.body
