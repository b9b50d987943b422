"""The session cookie read and written directly gives what aiohttp's cookie handling gives."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st

from enclave_runtime.kbs_protocol import SESSION_COOKIE
from kubetee.attestation_service.session_cookie import session_cookie, set_session_cookie
from kubetee.attestation_service.sessions import SessionSigner

SIGNER = SessionSigner(b"k" * 32, nonce_ttl_seconds=60, token_ttl_seconds=300, replica="r1")


def _by_aiohttp(value: str, max_age: int) -> list[str]:
    response = web.Response()
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=max_age,
        httponly=True,
        secure=True,
        samesite="Strict",
        path="/kbs/v0",
    )
    return [morsel.OutputString() for morsel in response.cookies.values()]


def _written(value: str, max_age: int) -> list[str]:
    response = web.Response()
    set_session_cookie(response, value, max_age)
    direct = response.headers.getall("Set-Cookie", [])
    return list(direct) + [morsel.OutputString() for morsel in response.cookies.values()]


@pytest.mark.parametrize(
    "value",
    [
        SIGNER.new_challenge(1000)[1],
        "eyJhbGciOiJIUzI1NiJ9.eyJ0eXAiOiJ4In0.c2lnbmF0dXJl",  # the shape of a token
        'needs "quoting"; and=more',  # not one of ours: aiohttp's own writer
    ],
)
def test_set_cookie_line_is_what_aiohttp_writes(value: str) -> None:
    assert _written(value, 60) == _by_aiohttp(value, 60)


@given(st.text(max_size=30), st.integers(min_value=0, max_value=10**6))
def test_set_cookie_line_equals_aiohttp_for_any_value(value: str, max_age: int) -> None:
    try:
        expected = _by_aiohttp(value, max_age)
    except Exception:  # a value aiohttp will not set is not ours to set either
        return
    assert _written(value, max_age) == expected


_COOKIE_CHARS = st.sampled_from([*'abcAZ09._-=;" ,/+', SESSION_COOKIE])


@given(st.lists(_COOKIE_CHARS, max_size=12).map("".join))
def test_reading_the_cookie_equals_aiohttp(header: str) -> None:
    request = make_mocked_request("GET", "/kbs/v0/attest", headers={"Cookie": header})
    assert session_cookie(request) == request.cookies.get(SESSION_COOKIE)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"{SESSION_COOKIE}=kc1.1.abc.r1.mac", "kc1.1.abc.r1.mac"),
        (f"other=1; {SESSION_COOKIE}=tok.en-_", "tok.en-_"),
        ("other=1", None),
        (f'{SESSION_COOKIE}="quoted"', "quoted"),
    ],
)
def test_reads_what_clients_send(header: str, expected: str | None) -> None:
    request = make_mocked_request("GET", "/kbs/v0/attest", headers={"Cookie": header})
    assert session_cookie(request) == expected


def test_no_cookie_header() -> None:
    assert session_cookie(make_mocked_request("GET", "/kbs/v0/attest")) is None
