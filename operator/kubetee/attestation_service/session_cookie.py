"""The ``kbs-session-id`` cookie on the wire, read and written without building a cookie
jar per request.

Every value this service sets is base64url and dots (the challenge cookie and the
attestation token), which a cookie carries unquoted: its ``Set-Cookie`` line is written
directly, byte for byte what aiohttp's ``set_cookie`` writes for it. A request's
``Cookie`` header is read the same way when it holds that cookie once, unquoted, as
every client sends it back; anything else (quotes, the name twice, other characters)
goes to aiohttp's full parser, so the answer never differs from it.
"""

from __future__ import annotations

import re

from aiohttp import hdrs, web

from enclave_runtime.kbs_protocol import SESSION_COOKIE

PATH = "/kbs/v0"
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9._-]+")
_NAME_EQUALS = SESSION_COOKIE + "="


def session_cookie(request: web.Request) -> str | None:
    """The value of the request's session cookie, or None."""
    header = request.headers.get(hdrs.COOKIE)
    if header is None:
        return None
    if '"' not in header and header.count(_NAME_EQUALS) == 1:
        for part in header.split(";"):
            name, _, value = part.strip().partition("=")
            if name == SESSION_COOKIE and _PLAIN_VALUE.fullmatch(value):
                return value
    return request.cookies.get(SESSION_COOKIE)


def set_session_cookie(response: web.Response, value: str, max_age: int) -> None:
    """Set the session cookie: sent back only over HTTPS, to the KBS paths, never to
    scripts or from other sites."""
    if _PLAIN_VALUE.fullmatch(value):
        response.headers.add(
            hdrs.SET_COOKIE,
            f"{SESSION_COOKIE}={value}; HttpOnly; Max-Age={max_age}; Path={PATH}; "
            "SameSite=Strict; Secure",
        )
        return
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=max_age,
        httponly=True,
        secure=True,
        samesite="Strict",
        path=PATH,
    )
