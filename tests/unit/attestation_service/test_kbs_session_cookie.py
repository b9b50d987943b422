"""The KBS client keeps the ``kbs-session-id`` cookie itself: read from ``Set-Cookie`` as
RFC 6265 has a user agent read it (a stock KBS sets ``kbs-session-id=<id>; Expires=``),
sent back as one ``Cookie`` header, other cookies ignored, forgotten at each ``auth``;
HTTP failures stay typed errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from enclave_runtime.kbs_protocol import (
    KbsProtocolError,
    KbsRefusedError,
    KbsUnavailableError,
    TeeKeyPair,
    decrypt_response,
    encrypt_to_tee_key,
)
from enclave_runtime.kbs_protocol.client import KbsClient
from enclave_runtime.kbs_protocol.models import (
    Attestation,
    CompositeEvidence,
    RuntimeData,
)
from enclave_runtime.kbs_protocol.session_cookie import session_cookie_after

NOW = 1_800_000_000.0  # 2027-01-15
FUTURE = "Wed, 01 Dec 2027 07:00:00 GMT"
PAST = "Tue, 01 Dec 2026 07:00:00 GMT"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([f"kbs-session-id=abc.def; Expires={FUTURE}"], "abc.def"),  # Trustee's form
        (["kbs-session-id=t1; Max-Age=300; HttpOnly; Secure; Path=/kbs/v0"], "t1"),
        (["  kbs-session-id = spaced ; SameSite=Strict"], "spaced"),
        (["other=1", "kbs-session-id=mine", "tracker=x; Path=/"], "mine"),
        (["kbs-session-id=first", "kbs-session-id=last"], "last"),
        (["kbs-session-id=a=b==; Path=/"], "a=b=="),  # the value runs to the first ";"
        (["kbs-session-idx=no", "xkbs-session-id=no", "kbs-session-id"], "old"),
        ([f"kbs-session-id=gone; Expires={PAST}"], None),
        (["kbs-session-id=gone; Max-Age=0"], None),
        (["kbs-session-id=gone; Max-Age=-1"], None),
        # Max-Age wins over Expires; the last of each attribute counts.
        ([f"kbs-session-id=kept; Expires={PAST}; Max-Age=60"], "kept"),
        ([f"kbs-session-id=gone; Max-Age=60; Expires={FUTURE}; Max-Age=0"], None),
        # Attribute values that do not parse are ignored (RFC 6265 5.2.1, 5.2.2).
        (["kbs-session-id=kept; Expires=tomorrow; Max-Age=soon; Max-Age=+5"], "kept"),
        ([], "old"),
    ],
)
def test_set_cookie_headers_are_read_as_rfc_6265_says(
    headers: list[str], expected: str | None
) -> None:
    assert session_cookie_after(headers, "old", NOW) == expected


def test_an_expires_date_is_judged_at_each_moment_though_read_once() -> None:
    header = [f"kbs-session-id=abc; Expires={FUTURE}; Path=/kbs/v0"]
    expires_at = 1_827_644_400.0  # FUTURE
    assert session_cookie_after(header, None, NOW) == "abc"
    assert session_cookie_after(header, None, expires_at - 1) == "abc"
    assert session_cookie_after(header, "old", expires_at) is None
    assert session_cookie_after(header, None, NOW) == "abc"


# -- the client against a KBS that behaves as Trustee's ------------------------------------


@dataclass
class StockKbs:
    """Records the Cookie header of each request; sets cookies as Trustee's KBS does."""

    url: str = ""
    key: TeeKeyPair = field(default_factory=TeeKeyPair.generate)
    cookies: list[tuple[str, str | None]] = field(default_factory=list)
    bodies: list[dict[str, object]] = field(default_factory=list)
    rounds: int = 0
    answer: web.Response | None = None  # instead of the next normal answer

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/kbs/v0/auth", self.auth)
        app.router.add_post("/kbs/v0/attest", self.attest)
        app.router.add_get("/kbs/v0/resource/{repo}/{kind}/{tag}", self.resource)
        return app

    def _record(self, request: web.Request) -> web.Response | None:
        self.cookies.append((request.path.rsplit("/", 1)[-1], request.headers.get("Cookie")))
        answer, self.answer = self.answer, None
        return answer

    async def auth(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        assert request.content_type == "application/json"
        self.rounds += 1
        response = self._record(request) or web.json_response({"nonce": "bm9uY2U="})
        response.headers.add("Set-Cookie", "tracker=x; Path=/")
        response.headers.add(
            "Set-Cookie", f"kbs-session-id=session-{self.rounds}; Expires={FUTURE}"
        )
        return response

    async def attest(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        assert request.content_type == "application/json"
        return self._record(request) or web.json_response({"token": "a.b.c"})

    async def resource(self, request: web.Request) -> web.Response:
        return self._record(request) or web.json_response(
            encrypt_to_tee_key(b"value", self.key.public_jwk()).to_wire()
        )


@pytest.fixture
async def kbs() -> AsyncIterator[StockKbs]:
    stock = StockKbs()
    runner = web.AppRunner(stock.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    stock.url = f"http://127.0.0.1:{port}"
    yield stock
    await runner.cleanup()


def attestation(key: TeeKeyPair) -> Attestation:
    return Attestation(
        runtime_data=RuntimeData(nonce="bm9uY2U=", tee_pubkey=key.public_jwk()),
        tee_evidence=CompositeEvidence(primary_evidence={"quote": "AAAA"}),
    )


async def test_the_auth_cookie_goes_with_attest_and_resource_and_a_new_round_forgets_it(
    kbs: StockKbs,
) -> None:
    async with KbsClient(kbs.url) as client:
        assert client.session_cookie is None
        for _ in range(2):
            assert (await client.auth()).nonce == "bm9uY2U="
            assert await client.attest(attestation(kbs.key)) == "a.b.c"
            released = await client.resource("ns", "ec", "db")
            assert decrypt_response(released, kbs.key) == b"value"

    assert kbs.cookies == [
        ("auth", None),
        ("attest", "kbs-session-id=session-1"),
        ("db", "kbs-session-id=session-1"),
        ("auth", None),  # the last round's cookie is not sent to start a new one
        ("attest", "kbs-session-id=session-2"),
        ("db", "kbs-session-id=session-2"),
    ]
    # The bodies are the protocol's JSON, as to_wire() makes them.
    assert kbs.bodies[0] == {"version": "0.4.0", "tee": "sgx", "extra-params": ""}
    assert kbs.bodies[1] == attestation(kbs.key).to_wire()


async def test_a_cookie_set_at_attest_replaces_the_auth_cookie(kbs: StockKbs) -> None:
    async with KbsClient(kbs.url) as client:
        await client.auth()
        response = web.json_response({"token": "t"})
        response.set_cookie("kbs-session-id", "attested-token", max_age=300, path="/kbs/v0")
        kbs.answer = response
        await client.attest(attestation(kbs.key))
        await client.resource("ns", "ec", "db")
        assert client.session_cookie == "attested-token"

    assert kbs.cookies[-1] == ("db", "kbs-session-id=attested-token")


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (web.Response(status=503), KbsUnavailableError, "attest: attestation service answered 503"),
        (
            web.json_response(
                {"type": "https://x/errors/PolicyDeny", "detail": "no", "reason": "Mismatch"},
                status=401,
            ),
            KbsRefusedError,
            r"attest refused \(401 Mismatch\): no",
        ),
        (web.Response(status=403, text="<html>"), KbsRefusedError, "without problem details"),
        (web.Response(text="<html>"), KbsProtocolError, "attest: response is not JSON"),
        (web.json_response({"tok": 1}), KbsProtocolError, "carries no token"),
        (web.Response(body=b""), KbsProtocolError, "carries no token"),
        # Not followed: the session cookie would go along to wherever it points.
        (
            web.Response(status=307, headers={"Location": "http://127.0.0.1:9/kbs/v0/attest"}),
            KbsProtocolError,
            r"attest: attestation service redirected \(307\)",
        ),
    ],
)
async def test_attest_failures_are_typed(
    kbs: StockKbs, answer: web.Response, error: type[Exception], message: str
) -> None:
    async with KbsClient(kbs.url) as client:
        await client.auth()
        kbs.answer = answer
        with pytest.raises(error, match=message):
            await client.attest(attestation(kbs.key))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "resource: response is not JSON"),
        (b"", r"resource: malformed JweResponse \(1 errors\)"),
        (json.dumps({"protected": "x"}).encode(), r"resource: malformed JweResponse \(4 errors\)"),
    ],
)
async def test_malformed_resources_are_protocol_errors(
    kbs: StockKbs, body: bytes, message: str
) -> None:
    async with KbsClient(kbs.url) as client:
        await client.auth()
        kbs.answer = web.Response(body=body, content_type="application/json")
        with pytest.raises(KbsProtocolError, match=message):
            await client.resource("ns", "ec", "db")
