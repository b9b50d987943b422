"""The KBS client's own HTTP/1.1 connection reads every answer a server may send as
HTTP/1.1 says (lengths, chunks, the connection's end, interim answers, ``Connection:
close``) and refuses, with a typed error, what a server may not send; whatever bytes
come back, the result is an answer or one of its three errors, never anything else."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from enclave_runtime.kbs_protocol import KbsProtocolError
from enclave_runtime.kbs_protocol.client import KbsClient
from enclave_runtime.kbs_protocol.kept_connection import (
    Answer,
    ConnectionLostError,
    KeptConnection,
    MalformedAnswerError,
    UnreachableError,
    _AnswerReader,
)

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclass
class CannedServer:
    """Answers each request with the next of ``answers`` (bytes, or a callable making
    them); a ``None`` answer closes the connection unanswered. Records what it got."""

    answers: list[bytes | None]
    close_after: set[int] = field(default_factory=set)  # answers followed by a close
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    url: URL = field(default_factory=URL)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + await reader.readexactly(length)
                index = len(self.requests)
                self.requests.append(request)
                answer = self.answers[index]
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if index in self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _served(canned: CannedServer) -> tuple[KeptConnection, asyncio.Server]:
    server = await asyncio.start_server(canned.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    canned.url = URL(f"http://127.0.0.1:{port}")
    return KeptConnection(canned.url), server


async def _exchange(
    answers: list[bytes | None], requests: int, close_after: set[int] | None = None
) -> tuple[CannedServer, list[Answer | Exception]]:
    canned = CannedServer(answers, close_after or set())
    connection, server = await _served(canned)
    results: list[Answer | Exception] = []
    try:
        for _ in range(requests):
            try:
                results.append(await connection.request("GET", "/x"))
            except (ConnectionLostError, MalformedAnswerError) as exc:
                results.append(exc)
    finally:
        await connection.aclose()
        server.close()
        await server.wait_closed()
    return canned, results


async def test_answers_with_a_length_reuse_the_connection() -> None:
    canned, results = await _exchange([OK, OK, OK], 3)

    assert results == [Answer(200, (), b"ok")] * 3
    assert canned.connections == 1


async def test_the_request_is_one_head_with_host_and_its_body() -> None:
    canned = CannedServer([OK])
    connection, server = await _served(canned)
    await connection.request("POST", "/kbs/v0/auth", "Content-Type: application/json\r\n", b"{}")
    await connection.aclose()
    server.close()

    port = canned.url.port
    assert canned.requests == [
        b"POST /kbs/v0/auth HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}" % port
    ]


async def test_chunked_answers_are_joined() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nTrailer: x\r\n\r\n"
    )
    canned, results = await _exchange([chunked, OK], 2)

    assert results == [Answer(200, (), b"abcdefg"), Answer(200, (), b"ok")]
    assert canned.connections == 1


async def test_a_body_ended_by_the_connection_is_read_and_the_next_request_reconnects() -> None:
    until_close = b"HTTP/1.1 200 OK\r\n\r\nall of it"
    canned, results = await _exchange([until_close, OK], 2, close_after={0})

    assert results == [Answer(200, (), b"all of it"), Answer(200, (), b"ok")]
    assert canned.connections == 2


async def test_interim_answers_are_skipped() -> None:
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + OK
    _, results = await _exchange([early], 1)

    assert results == [Answer(200, (), b"ok")]


@pytest.mark.parametrize(
    "closing",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ],
)
async def test_an_answer_that_ends_the_connection_is_not_followed_on_it(closing: bytes) -> None:
    canned, results = await _exchange([closing, OK], 2)

    assert results == [Answer(200, (), b"ok")] * 2
    assert canned.connections == 2


async def test_no_content_answers_keep_the_connection() -> None:
    canned, results = await _exchange([b"HTTP/1.1 204 No Content\r\n\r\n", OK], 2)

    assert results == [Answer(204, (), b""), Answer(200, (), b"ok")]
    assert canned.connections == 1


async def test_every_set_cookie_is_kept_in_order() -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nset-cookie: kbs-session-id=x; Path=/\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    _, results = await _exchange([answer], 1)

    assert results == [Answer(200, ("a=1", "kbs-session-id=x; Path=/"), b"")]


async def test_a_connection_closed_before_or_during_the_answer_is_lost() -> None:
    truncated = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"
    canned, results = await _exchange([None, truncated, OK], 3, close_after={1})

    assert isinstance(results[0], ConnectionLostError)
    assert "before the answer" in str(results[0])
    assert isinstance(results[1], ConnectionLostError)
    assert "middle of the answer" in str(results[1])
    assert results[2] == Answer(200, (), b"ok")
    assert canned.connections == 3


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"SMTP ready\r\n\r\n", "not an HTTP/1.1 answer"),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
            "switches protocols",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "not an HTTP/1.1 answer"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", "head larger than 65536"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000, "head larger than 65536"),  # unfinished
        (b"HTTP/1.1 200 OK\r\nContent-Length: 9000000\r\n\r\n" + b"a" * 9_000_000, "larger"),
    ],
)
async def test_what_a_server_may_not_answer_is_refused_and_the_connection_dropped(
    answer: bytes, message: str
) -> None:
    canned, results = await _exchange([answer, OK], 2)

    assert isinstance(results[0], MalformedAnswerError)
    assert message in str(results[0])
    assert results[1] == Answer(200, (), b"ok")
    assert canned.connections == 2


async def test_bytes_after_the_answer_end_the_connection() -> None:
    canned, results = await _exchange([OK + b"HTTP/1.1 200 OK\r\n", OK], 2)

    assert results == [Answer(200, (), b"ok")] * 2
    assert canned.connections == 2


async def test_a_closed_port_is_unreachable() -> None:
    server = await asyncio.start_server(lambda *_: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()

    with pytest.raises(UnreachableError):
        await KeptConnection(URL(f"http://127.0.0.1:{port}")).request("GET", "/")


def test_only_http_urls_with_a_host_are_taken() -> None:
    for url in ("ftp://host/", "https:///path", "/relative"):
        with pytest.raises(ValueError, match="not an http"):
            KeptConnection(URL(url))


async def test_a_session_cookie_that_would_break_its_header_is_refused() -> None:
    async with KbsClient("https://kbs.example") as kbs:
        with pytest.raises(KbsProtocolError, match="session cookie"):
            kbs._answer("auth", Answer(200, ("kbs-session-id=a\nInjected: 1",), b"{}"))
        assert kbs.session_cookie is None


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda head, rest: head + rest,
            st.sampled_from(
                [
                    b"HTTP/1.1 200 OK\r\n",
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                    b"HTTP/1.1 100 Continue\r\n\r\n",
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n",
                    b"HTTP/1.0 302 Found\r\nContent-Length: 3\r\n\r\n",
                ]
            ),
            st.binary(max_size=200),
        ),
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=500), max_size=4),
)
def test_any_bytes_give_an_answer_or_a_typed_error(data: bytes, cuts: list[int]) -> None:
    """Fed in any pieces, then the connection's end: no other exception, nothing left
    pending."""

    async def feed() -> Answer | Exception:
        reader = _AnswerReader(asyncio.get_running_loop(), max_answer_bytes=100)
        reader.connection_made(_Transport())
        answer = reader.expect()
        start = 0
        for cut in [*sorted(cuts), len(data)]:
            if start < len(data):
                reader.data_received(data[start:cut])
            start = max(start, cut)
        reader.connection_lost(None)
        assert answer.done()
        try:
            return answer.result()
        except (ConnectionLostError, MalformedAnswerError) as exc:
            return exc

    result = asyncio.run(feed())

    assert isinstance(result, Answer | ConnectionLostError | MalformedAnswerError)
    if isinstance(result, Answer):
        assert result.status >= 200
        assert len(result.body) <= 100
