"""The service's HTTP/1.1 connections, as a stock client or an attacker meets them: on a
real listener (plain TCP: TLS is the transport's, tested with the whole service), and a
property test feeding any bytes to one connection."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httptools
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enclave_runtime.kbs_protocol import KBS_PROTOCOL_VERSION
from kubetee.attestation_service.app import MAX_BODY_BYTES, Handler, KbsApp, create_app
from kubetee.attestation_service.connections import ConnectionLimits
from kubetee.attestation_service.http_connection import MAX_HEAD_BYTES, HttpConnection
from kubetee.attestation_service.http_messages import HttpRequest, HttpResponse
from tests.kbs_serving import port_of, serving, unverifying_service

from .conftest import Stack

AUTH = json.dumps({"version": KBS_PROTOCOL_VERSION, "tee": "sgx", "extra-params": ""}).encode()
PROBLEM = "https://github.com/confidential-containers/kbs/errors/"


def _app() -> KbsApp:
    return create_app(unverifying_service())


@pytest.fixture
async def app() -> KbsApp:
    return _app()


@pytest.fixture
async def port(app: KbsApp) -> AsyncIterator[int]:
    async with serving(app, limits=ConnectionLimits(keepalive_timeout=0.5)) as served:
        yield port_of(served)


class Answer:
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""


class Answers:
    """Reads a connection's answers with llhttp's response parser."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.done: list[Answer] = []
        self._current = Answer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._current.headers[name.decode().lower()] = value.decode()

    def on_headers_complete(self) -> None:
        self._current.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self._current.body += body

    def on_message_complete(self) -> None:
        self.done.append(self._current)
        self._current = Answer()

    def feed(self, data: bytes) -> None:
        self.parser.feed_data(data)


async def _exchange(port: int, *chunks: bytes, answers: int = 1) -> tuple[list[Answer], bool]:
    """Send ``chunks`` (one write each), read until ``answers`` complete answers or the
    end; the answers, and whether the server closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()
    parsed = Answers()
    closed = False
    try:
        while len(parsed.done) < answers:
            data = await asyncio.wait_for(reader.read(65536), timeout=5)
            if not data:
                closed = True
                break
            parsed.feed(data)
        if not closed:
            closed = await _closes(reader)
    finally:
        writer.close()
    return parsed.done, closed


async def _closes(reader: asyncio.StreamReader, within: float = 0.2) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), timeout=within) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def _problem(answer: Answer) -> dict[str, Any]:
    assert answer.headers["content-type"] == "application/json; charset=utf-8"
    problem: dict[str, Any] = json.loads(answer.body)
    assert problem["type"].startswith(PROBLEM)
    return problem


def _post(path: str, body: bytes, *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return (
        f"POST {path} HTTP/1.1\r\nHost: kbs\r\nContent-Type: application/json\r\n{head}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: kbs\r\n\r\n"


async def test_pipelined_requests_are_answered_in_order_on_one_connection(port: int) -> None:
    answers, closed = await _exchange(
        port, HEALTHZ + _post("/kbs/v0/auth", b"{not json") + _post("/kbs/v0/auth", AUTH), answers=3
    )

    assert [a.status for a in answers] == [200, 400, 200]
    assert json.loads(answers[0].body) == {"status": "ok"}
    assert _problem(answers[1])["reason"] == "BadRequest"
    assert "nonce" in json.loads(answers[2].body)
    assert answers[2].headers["set-cookie"].startswith("kbs-session-id=")
    assert "connection" not in answers[2].headers
    assert not closed


async def test_a_body_sent_in_pieces_is_read_whole(port: int) -> None:
    request = _post("/kbs/v0/auth", AUTH)
    answers, _ = await _exchange(port, request[:30], request[30:-5], request[-5:])

    assert [a.status for a in answers] == [200]


async def test_chunked_bodies_are_read(port: int) -> None:
    head = b"POST /kbs/v0/auth HTTP/1.1\r\nHost: kbs\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in (AUTH[:10], AUTH[10:]))
    answers, _ = await _exchange(port, head + body + b"0\r\n\r\n")

    assert [a.status for a in answers] == [200]


async def test_expect_100_continue_is_answered_before_the_body(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = _post("/kbs/v0/auth", AUTH, "Expect: 100-continue")
    head, body = request[: -len(AUTH)], AUTH
    writer.write(head)
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    writer.write(body)
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    writer.close()

    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")


@pytest.mark.parametrize(
    ("request_bytes", "status", "reason"),
    [
        (_post("/kbs/v0/auth", AUTH, "Expect: something-else"), 417, "SerdeError"),
        (  # Content-Length says too much: refused before the body is sent
            b"POST /kbs/v0/auth HTTP/1.1\r\nHost: kbs\r\n"
            + f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode(),
            413,
            "SerdeError",
        ),
        (b"GARBAGE\r\n\r\n", 400, "SerdeError"),
        (b"GET /healthz HTTP/1.1\r\nHost: kbs\r\nBad Header\r\n\r\n", 400, "SerdeError"),
        (  # request smuggling's shape: both lengths
            b"POST /kbs/v0/auth HTTP/1.1\r\nHost: kbs\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            "SerdeError",
        ),
        (b"CONNECT kbs:443 HTTP/1.1\r\nHost: kbs\r\n\r\n", 400, "SerdeError"),
    ],
    ids=["expectation", "too-long", "garbage", "header", "smuggling", "connect"],
)
async def test_refused_requests_get_a_problem_and_the_connection_closes(
    port: int, request_bytes: bytes, status: int, reason: str
) -> None:
    answers, closed = await _exchange(port, request_bytes)

    assert [a.status for a in answers] == [status]
    assert _problem(answers[0])["reason"] == reason
    assert answers[0].headers["connection"] == "close"
    assert closed


async def test_an_upgrade_is_ignored_the_request_answered_and_the_connection_closed(
    port: int,
) -> None:
    answers, closed = await _exchange(
        port,
        b"GET /healthz HTTP/1.1\r\nHost: kbs\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
        + HEALTHZ,
    )

    assert [a.status for a in answers] == [200]
    assert answers[0].headers["connection"] == "close"
    assert closed


async def test_a_chunked_body_over_the_limit_is_refused_while_it_arrives(port: int) -> None:
    head = b"POST /kbs/v0/auth HTTP/1.1\r\nHost: kbs\r\nTransfer-Encoding: chunked\r\n\r\n"
    piece = b"x" * 65536
    chunks = [f"{len(piece):x}\r\n".encode() + piece + b"\r\n"] * (MAX_BODY_BYTES // len(piece) + 1)

    answers, closed = await _exchange(port, head, *chunks)

    assert [a.status for a in answers] == [413]
    assert closed


async def test_a_head_that_never_ends_is_refused_at_its_limit(port: int) -> None:
    line = b"X-Filler: " + b"a" * 8192  # one header line that never ends
    answers, closed = await _exchange(
        port, b"GET /healthz HTTP/1.1\r\nHost: kbs\r\n", *[line] * (MAX_HEAD_BYTES // len(line) + 2)
    )

    assert [a.status for a in answers] == [431]
    assert closed


async def test_answers_before_a_refusal_are_sent_first(port: int) -> None:
    answers, closed = await _exchange(port, HEALTHZ + b"GARBAGE\r\n\r\n", answers=2)

    assert [a.status for a in answers] == [200, 400]
    assert closed


async def test_http_1_0_closes_unless_asked_and_says_keep_alive_when_asked(port: int) -> None:
    closing, closed = await _exchange(port, b"GET /healthz HTTP/1.0\r\n\r\n")
    kept, kept_closed = await _exchange(
        port, b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    )

    assert (closing[0].status, closing[0].headers["connection"], closed) == (200, "close", True)
    assert (kept[0].status, kept[0].headers["connection"], kept_closed) == (
        200,
        "keep-alive",
        False,
    )


async def test_connection_close_is_honoured(port: int) -> None:
    answers, closed = await _exchange(
        port, b"GET /healthz HTTP/1.1\r\nHost: kbs\r\nConnection: close\r\n\r\n" + HEALTHZ
    )

    assert [a.status for a in answers] == [200]
    assert answers[0].headers["connection"] == "close"
    assert closed


async def test_head_is_get_without_the_body(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"HEAD /healthz HTTP/1.1\r\nHost: kbs\r\n\r\n" + HEALTHZ)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    following = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    writer.close()

    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Length: 16\r\n" in head  # {"status": "ok"}
    assert following.startswith(b"HTTP/1.1 200 OK\r\n")  # no body came between the two


@pytest.mark.parametrize(
    ("request_bytes", "status", "allow"),
    [
        (b"GET /nowhere HTTP/1.1\r\nHost: kbs\r\n\r\n", 404, None),
        (b"OPTIONS * HTTP/1.1\r\nHost: kbs\r\n\r\n", 404, None),
        (b"GET https://kbs/nowhere HTTP/1.1\r\nHost: kbs\r\n\r\n", 404, None),
        (b"GET /kbs/v0/resource/a/b HTTP/1.1\r\nHost: kbs\r\n\r\n", 404, None),
        (b"GET /kbs/v0/resource/a//c HTTP/1.1\r\nHost: kbs\r\n\r\n", 404, None),
        (b"GET /kbs/v0/resource/a/%ff/c HTTP/1.1\r\nHost: kbs\r\n\r\n", 404, None),
        (b"GET /kbs/v0/auth HTTP/1.1\r\nHost: kbs\r\n\r\n", 405, "POST"),
        (b"DELETE /healthz HTTP/1.1\r\nHost: kbs\r\n\r\n", 405, "GET, HEAD"),
        (b"POST /kbs/v0/resource/a/b/c HTTP/1.1\r\nHost: kbs\r\n\r\n", 405, "GET, HEAD"),
    ],
)
async def test_unrouted_requests_are_problems_and_keep_the_connection(
    port: int, request_bytes: bytes, status: int, allow: str | None
) -> None:
    answers, closed = await _exchange(port, request_bytes)

    assert [a.status for a in answers] == [status]
    assert _problem(answers[0])["reason"] == "InvalidRequestPath"
    assert answers[0].headers.get("allow") == allow
    assert not closed


async def test_a_resource_path_is_decoded_segment_by_segment(app: KbsApp) -> None:
    seen: list[dict[str, str]] = []

    async def record(request: HttpRequest, _handler: Handler) -> HttpResponse:
        seen.append(request.match_info)
        return HttpResponse(200, b"{}")

    app.middlewares.append(record)
    async with serving(app) as served:
        answers, _ = await _exchange(
            port_of(served),
            b"GET /kbs/v0/resource/shop/pay%2Fments/db%20pw HTTP/1.1\r\nHost: kbs\r\n\r\n",
        )

    assert [a.status for a in answers] == [200]
    assert seen == [{"repository": "shop", "type": "pay/ments", "tag": "db pw"}]


async def test_an_idle_connection_is_closed_and_partial_data_does_not_extend_it(
    port: int,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = asyncio.get_running_loop().time()
    for byte in b"GET /healthz HTTP/1.1\r\n":  # a byte every 0.1 s: never a whole request
        writer.write(bytes([byte]))
        await asyncio.sleep(0.1)
        if reader.at_eof():
            break
    data = await asyncio.wait_for(reader.read(), timeout=5)
    elapsed = asyncio.get_running_loop().time() - started
    writer.close()

    assert data == b""
    assert elapsed < 1.5  # the timeout (0.5 s) ran from the start, not from the last byte


async def test_a_handlers_unexpected_error_is_a_500_logged_server_side_only(
    app: KbsApp, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(_request: HttpRequest, _handler: Handler) -> HttpResponse:
        raise RuntimeError("internal detail")

    app.middlewares.append(broken)
    async with serving(app) as served:
        answers, closed = await _exchange(port_of(served), HEALTHZ + HEALTHZ, answers=2)

    assert [a.status for a in answers] == [500, 500]
    assert _problem(answers[0])["reason"] == "InternalError"
    assert b"internal detail" not in answers[0].body
    assert b"Traceback" not in answers[0].body
    assert "internal detail" in caplog.text  # the log has it
    assert not closed


async def test_a_client_gone_mid_request_lets_the_handler_finish(app: KbsApp) -> None:
    release, finished = asyncio.Event(), asyncio.Event()

    async def slow(_request: HttpRequest, _handler: Handler) -> HttpResponse:
        await release.wait()
        finished.set()
        return HttpResponse(200, b"{}")

    app.middlewares.append(slow)
    async with serving(app) as served:
        _, writer = await asyncio.open_connection("127.0.0.1", port_of(served))
        writer.write(HEALTHZ)
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.close()
        await asyncio.sleep(0.1)
        release.set()
        await asyncio.wait_for(finished.wait(), timeout=5)

    assert finished.is_set()


async def test_shutdown_closes_idle_connections_and_finishes_answers(app: KbsApp) -> None:
    release = asyncio.Event()

    async def slow(request: HttpRequest, handler: Handler) -> HttpResponse:
        if request.path == "/readyz":
            await release.wait()
        return await handler(request)

    app.middlewares.append(slow)
    async with serving(app) as served:
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port_of(served))
        busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", port_of(served))
        busy_writer.write(b"GET /readyz HTTP/1.1\r\nHost: kbs\r\n\r\n")
        await busy_writer.drain()
        await asyncio.sleep(0.1)
        closing = asyncio.create_task(served.close(grace_seconds=5))
        assert await asyncio.wait_for(idle_reader.read(), timeout=5) == b""
        release.set()
        answer = await asyncio.wait_for(busy_reader.read(), timeout=5)
        await closing
    idle_writer.close()
    busy_writer.close()

    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close\r\n" in answer


# -- any bytes -----------------------------------------------------------------------------


class _Transport(asyncio.Transport):
    """Collects what the connection writes (the property test needs no socket)."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


_PIECES = st.sampled_from(
    [
        HEALTHZ,
        _post("/kbs/v0/auth", AUTH),
        b"GET /kbs/v0/resource/a/b/c HTTP/1.1\r\nHost: kbs\r\n\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Content-Length: 5\r\n",
        b"Expect: 100-continue\r\n",
        b"Connection: close\r\n",
        b"\r\n",
        b"HTTP/1.0",
        b"0\r\n\r\n",
    ]
)
_BYTES = st.lists(st.one_of(_PIECES, st.binary(max_size=40)), max_size=8).map(b"".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_BYTES, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=4))
def test_any_bytes_get_http_answers_or_a_close_and_nothing_escapes(
    data: bytes, cuts: list[int]
) -> None:
    async def scenario() -> None:
        connection = HttpConnection(_app(), keepalive_timeout=5)
        transport = _Transport()
        connection.connection_made(transport)
        bounds = [0, *sorted(cuts), len(data)]
        pieces = [data[a:b] for a, b in itertools.pairwise(bounds)]
        for piece in pieces:
            connection.data_received(piece)
            for _ in range(5):  # let answers run
                await asyncio.sleep(0)
        connection.connection_lost(None)
        raw = bytes(transport.written).replace(b"HTTP/1.1 100 Continue\r\n\r\n", b"")
        answers = Answers()
        answers.feed(raw)  # whatever was written is well-formed HTTP/1.1 answers
        assert all(a.status in {200, 400, 401, 404, 405, 413, 417, 431} for a in answers.done)
        for answer in answers.done:
            if answer.status != 200:
                assert json.loads(answer.body)["type"].startswith(PROBLEM)

    logging.disable(logging.WARNING)
    try:
        asyncio.run(scenario())
    finally:
        logging.disable(logging.NOTSET)


# -- another client's HTTP stack -------------------------------------------------------------


async def test_requests_over_tls_gets_its_session_cookie_back(stack: Stack) -> None:
    """urllib3 (through requests), not the runtime's client or aiohttp: the challenge's
    cookie comes back on the next request, a chunked upload is read, HEAD has no body."""

    def exchange() -> list[tuple[int, str]]:
        with requests.Session() as session:
            session.trust_env = False  # no CA bundle or proxy from the environment
            session.verify = str(stack.tls.ca)
            auth = session.post(f"{stack.base_url}/kbs/v0/auth", data=AUTH)
            chunked = session.post(f"{stack.base_url}/kbs/v0/attest", data=iter([b"{", b"}"]))
            head = session.head(f"{stack.base_url}/healthz")
            return [
                (auth.status_code, (auth.cookies.get("kbs-session-id") or "")[:4]),
                (chunked.status_code, chunked.json()["reason"]),
                (head.status_code, head.text),
            ]

    results = await asyncio.to_thread(exchange)

    assert results == [(200, "kc1."), (400, "BadRequest"), (200, "")]
