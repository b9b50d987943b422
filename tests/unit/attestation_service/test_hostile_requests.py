"""Hostile requests: every one gets a typed refusal (never a 500 or a traceback), nothing
is written before the evidence verified, logs cannot be forged, and connections are
bounded."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import random
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import pytest

from enclave_runtime.kbs_protocol import SESSION_COOKIE, RuntimeData, TeeKeyPair, report_data_for
from enclave_runtime.kbs_protocol.init_data import PodIdentity, config_id_for, pod_init_data
from kubetee.attestation.errors import PolicyError
from kubetee.attestation.verified import VerifiedQuote
from kubetee.attestation_service.app import create_app
from kubetee.attestation_service.connections import ConnectionLimits, start
from kubetee.attestation_service.printable import printable
from kubetee.attestation_service.tls import server_context
from kubetee.attestation_service.workloads import Workload
from tests.unit.attestation.test_fuzz import mutate

from .conftest import Stack, identity

SEED = 20261130
ALLOWED = {400, 401, 403, 404, 405, 413}


@dataclass
class Recorder:
    """Counts the ledger's writes and reads what it keeps."""

    records: int = 0


async def _raw(
    stack: Stack,
    method: str,
    path: str,
    body: bytes | io.BytesIO | None = None,
    cookie: str | None = None,
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if cookie is not None:
        headers["Cookie"] = f"{SESSION_COOKIE}={cookie}"
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http,
        http.request(
            method,
            f"{stack.base_url}{path}",
            data=body,
            headers=headers,
            ssl=stack.client_context(),
        ) as response,
    ):
        text = await response.text()
        try:
            document = json.loads(text)
        except ValueError:
            document = {"raw": text}
        return response.status, document


async def _challenge(stack: Stack) -> tuple[str, str]:
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http,
        http.post(
            f"{stack.base_url}/kbs/v0/auth",
            json={"version": "0.4.0", "tee": "sgx", "extra-params": ""},
            ssl=stack.client_context(),
        ) as response,
    ):
        return (await response.json())["nonce"], response.cookies[SESSION_COOKIE].value


async def _genuine_attestation(stack: Stack, nonce: str, pod_name: str = "payments-1") -> dict:
    pod = stack.add_pod(pod_name)
    init_data = pod_init_data(PodIdentity(pod.namespace, pod.name, pod.uid))
    data = RuntimeData(nonce=nonce, tee_pubkey=TeeKeyPair.generate().public_jwk())
    settings = stack.runtime_settings(pod)
    body = replace(
        identity(settings).report_body(report_data_for(data)),
        config_id=config_id_for(init_data),
    )
    quote = await stack.quoting().quote(body)
    return {
        "init-data": init_data.to_wire(),
        "runtime-data": data.to_wire(),
        "tee-evidence": {
            "primary_evidence": {"quote": base64.b64encode(quote).decode()},
            "additional_evidence": "",
        },
    }


def _assert_typed(status: int, problem: dict[str, Any]) -> None:
    assert status in ALLOWED, (status, problem)
    assert problem["type"].startswith("https://github.com/confidential-containers/kbs/errors/")
    assert problem["reason"]
    assert "Traceback" not in json.dumps(problem)


def _ledger_spy(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    app_service = stack.service
    original = app_service.ledger.record

    async def record(nonce: str, expires_at: int, token: str | None) -> None:
        recorder.records += 1
        await original(nonce, expires_at, token)

    monkeypatch.setattr(app_service.ledger, "record", record)
    return recorder


async def test_fuzzed_bodies_get_typed_refusals_and_write_nothing(
    stack: Stack, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    recorder = _ledger_spy(stack, monkeypatch)
    nonce, cookie = await _challenge(stack)
    genuine = json.dumps(await _genuine_attestation(stack, nonce)).encode()
    auth = b'{"version": "0.4.0", "tee": "sgx", "extra-params": ""}'
    rng = random.Random(SEED)  # noqa: S311  # reproducible inputs
    statuses: set[int] = set()
    for index in range(120):
        if index % 3 == 0:
            status, problem = await _raw(stack, "POST", "/kbs/v0/auth", mutate(auth, rng))
            if status == 200:  # a mutation that is still a valid request
                continue
        else:
            status, problem = await _raw(
                stack, "POST", "/kbs/v0/attest", mutate(genuine, rng), cookie
            )
        _assert_typed(status, problem)
        statuses.add(status)
    assert statuses >= {400, 401}
    assert recorder.records == 0
    assert stack.cluster.outcomes == []
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda a: a["tee-evidence"]["primary_evidence"].update(quote="AAAA€€€€"), "BadRequest"),
        (
            lambda a: a["runtime-data"]["tee-pubkey"].update(
                x=a["runtime-data"]["tee-pubkey"]["y"]
            ),
            "BadRequest",
        ),
        (lambda a: a.update({"init-data": None}), "PodNotNamed"),
        (lambda a: a["init-data"].update(body="version = [[[["), "PodNotNamed"),
        (lambda a: a["init-data"].update(format="yaml"), "PodNotNamed"),
        (lambda a: a.update({"runtime-data": {"nonce": [[[[[[]]]]]]}}), "BadRequest"),
    ],
    ids=["non-ascii-quote", "off-curve-tee-pubkey", "no-init-data", "bad-toml", "yaml", "nested"],
)
async def test_hostile_attestations_are_refused_before_any_write(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, change: Any, reason: str
) -> None:
    recorder = _ledger_spy(stack, monkeypatch)
    nonce, cookie = await _challenge(stack)
    attestation = await _genuine_attestation(stack, nonce)
    change(attestation)

    status, problem = await _raw(
        stack, "POST", "/kbs/v0/attest", json.dumps(attestation).encode(), cookie
    )

    _assert_typed(status, problem)
    assert problem["reason"] == reason
    assert (recorder.records, stack.cluster.outcomes) == (0, [])


async def test_deeply_nested_json_is_a_bad_request(stack: Stack) -> None:
    deep = (
        b'{"version": "0.4.0", "tee": "sgx", "extra-params": '
        + b"[" * 50_000
        + b"]" * 50_000
        + b"}"
    )
    status, problem = await _raw(stack, "POST", "/kbs/v0/auth", deep)
    _assert_typed(status, problem)


async def test_unauthenticated_requests_write_nothing(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = _ledger_spy(stack, monkeypatch)
    for _ in range(5):
        await _challenge(stack)
    status, problem = await _raw(stack, "POST", "/kbs/v0/attest", b"{}")
    _assert_typed(status, problem)
    assert (recorder.records, stack.cluster.outcomes) == (0, [])


async def test_client_text_cannot_forge_log_lines(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    forged = "/kbs/v0/resource/x%0AINFO%20kubetee%20attested%20pod%20evil/y/z"
    status, problem = await _raw(stack, "GET", forged)
    _assert_typed(status, problem)
    lines = [r.getMessage() for r in caplog.records]
    assert not any("\n" in line for line in lines)
    assert not any(line.startswith("INFO kubetee") for line in caplog.text.splitlines())
    assert printable("a\nb\x1b[31m") == "a\\nb\\x1b[31m"


async def test_unknown_paths_and_methods_are_problem_details(stack: Stack) -> None:
    for method, path in (
        ("GET", "/kbs/v0/nope"),
        ("GET", "/kbs/v0/auth"),
        ("DELETE", "/kbs/v0/attest"),
    ):
        status, problem = await _raw(stack, method, path)
        _assert_typed(status, problem)
    status, problem = await _raw(stack, "POST", "/kbs/v0/auth", io.BytesIO(b"x" * (2 << 20)))
    assert status == 413
    _assert_typed(status, problem)


class _PlatformMismatchError(PolicyError):
    default_code = "PLATFORM_NOT_OF_NODE"
    reason = "PlatformMismatch"


class _RefuseEveryPlatform:
    def __init__(self) -> None:
        self.checked: list[tuple[str, bytes]] = []

    async def check(self, workload: Workload, verified: VerifiedQuote) -> None:
        self.checked.append((workload.node_name, verified.fmspc))
        raise _PlatformMismatchError(
            f"the quote's platform is not registered for {workload.node_name}"
        )


async def test_platform_check_runs_after_verification_and_refusal_is_reported(
    stack: Stack,
) -> None:
    check = _RefuseEveryPlatform()
    stack.service.platforms = check
    nonce, cookie = await _challenge(stack)
    attestation = await _genuine_attestation(stack, nonce)

    status, problem = await _raw(
        stack, "POST", "/kbs/v0/attest", json.dumps(attestation).encode(), cookie
    )

    assert (status, problem["reason"]) == (401, "PlatformMismatch")
    assert [node for node, _ in check.checked] == ["node-a"]
    assert [o.reason for o in stack.cluster.outcomes] == ["PlatformMismatch"]


@pytest.fixture
async def bounded(stack: Stack) -> AsyncIterator[tuple[int, Any]]:
    app = create_app(stack.service)
    served = await start(
        app,
        host="127.0.0.1",
        port=0,
        ssl_context=server_context(stack.tls.certificate, stack.tls.key),
        limits=ConnectionLimits(max_connections=2, keepalive_timeout=0.5, handshake_timeout=0.5),
    )
    yield served.listener.sockets[0].getsockname()[1], served.connections
    await served.close(grace_seconds=1.0)


async def _tls(stack: Stack, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, ssl=stack.client_context())


async def _serves(stack: Stack, port: int) -> bool:
    try:
        reader, writer = await _tls(stack, port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        answered = bool(await asyncio.wait_for(reader.read(1), timeout=5))
    except (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError, OSError):
        return False
    writer.close()
    return answered


async def test_connections_are_bounded_and_idle_ones_closed(
    stack: Stack, bounded: tuple[int, Any]
) -> None:
    port, factory = bounded
    first = await _tls(stack, port)
    second = await _tls(stack, port)
    assert factory.live == 2
    # A third connection is closed at once (no TLS session can be set up on it).
    assert not await _serves(stack, port)
    # Idle and half-sent connections are closed after the keep-alive timeout.
    first[1].write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # a head never finished
    await first[1].drain()
    for reader, _ in (first, second):
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""
    for _, writer in (first, second):
        writer.close()
    await asyncio.sleep(0.1)
    assert factory.live == 0
    assert factory.refused >= 1
    assert await _serves(stack, port)  # room again once they are gone


async def test_raw_tcp_without_tls_handshake_is_dropped(
    stack: Stack, bounded: tuple[int, Any]
) -> None:
    port, factory = bounded
    loop = asyncio.get_running_loop()
    raw = socket.create_connection(("127.0.0.1", port))
    raw.setblocking(False)
    try:
        data = await asyncio.wait_for(loop.sock_recv(raw, 10), timeout=5)
    finally:
        raw.close()
    assert data == b""
    assert factory.live == 0


async def test_fuzzed_cookies_tokens_and_paths_get_typed_refusals(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _, cookie = await _challenge(stack)
    rng = random.Random(SEED + 1)  # noqa: S311  # reproducible inputs
    for _ in range(60):
        mutated = mutate(cookie.encode(), rng).decode("latin-1")
        printable_cookie = "".join(c for c in mutated if 0x21 <= ord(c) < 0x7F and c != ";")
        status, problem = await _raw(stack, "POST", "/kbs/v0/attest", b"{}", printable_cookie)
        _assert_typed(status, problem)
        status, problem = await _raw(
            stack, "GET", "/kbs/v0/resource/shop/payments/db", None, printable_cookie
        )
        _assert_typed(status, problem)
    for path in ("/kbs/v0/resource/%00/%FF/..", "/kbs/v0/resource/a/b/" + "c" * 5000):
        status, problem = await _raw(stack, "GET", path)
        _assert_typed(status, problem)
    assert "Traceback" not in caplog.text
