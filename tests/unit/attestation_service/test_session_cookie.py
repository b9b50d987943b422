"""The session cookie written directly is what aiohttp's writer (a ``Morsel``) writes, and
it is read from a ``Cookie`` header as servers read cookies, leniently."""

from __future__ import annotations

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from enclave_runtime.kbs_protocol import SESSION_COOKIE
from kubetee.attestation_service.http_messages import HttpRequest, HttpResponse
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
    response = HttpResponse()
    set_session_cookie(response, value, max_age)
    return [v for name, v in response.headers if name == "Set-Cookie"]


def _request(cookie: str | None = None) -> HttpRequest:
    return HttpRequest("GET", "/kbs/v0/attest", {} if cookie is None else {"cookie": cookie})


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


_NAMES = st.sampled_from(["a", "other", "kbs-session", "xkbs-session-id", SESSION_COOKIE])
_VALUES = st.from_regex(r"[A-Za-z0-9._-]{0,8}", fullmatch=True)
_JUNK = st.sampled_from(["", " ", "junk", SESSION_COOKIE, f" {SESSION_COOKIE} "])


@given(
    pairs=st.lists(st.tuples(_NAMES, _VALUES), max_size=5),
    junk=st.lists(st.tuples(st.integers(min_value=0, max_value=5), _JUNK), max_size=3),
    spaces=st.sampled_from(["", " ", "  "]),
)
def test_the_first_session_pair_is_read_whatever_surrounds_it(
    pairs: list[tuple[str, str]], junk: list[tuple[int, str]], spaces: str
) -> None:
    parts = [f"{spaces}{name}{spaces}={spaces}{value}{spaces}" for name, value in pairs]
    for index, part in junk:  # parts that are no pair: skipped, the rest still read
        parts.insert(min(index, len(parts)), part)
    expected = next((value for name, value in pairs if name == SESSION_COOKIE), None)

    assert session_cookie(_request(";".join(parts))) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"{SESSION_COOKIE}=kc1.1.abc.r1.mac", "kc1.1.abc.r1.mac"),
        (f"other=1; {SESSION_COOKIE}=tok.en-_", "tok.en-_"),
        ("other=1", None),
        (f'{SESSION_COOKIE}="quoted"', "quoted"),
        (f";{SESSION_COOKIE}=a", "a"),
        (f"{SESSION_COOKIE}=first; {SESSION_COOKIE}=second", "first"),
        (f"{SESSION_COOKIE}; other=1", None),
        (f"x{SESSION_COOKIE}=no", None),
    ],
)
def test_reads_what_clients_send(header: str, expected: str | None) -> None:
    assert session_cookie(_request(header)) == expected


def test_no_cookie_header() -> None:
    assert session_cookie(_request()) is None
