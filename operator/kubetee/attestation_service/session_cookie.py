"""The ``kbs-session-id`` cookie on the wire, read and written without building a cookie
jar per request.

Every value this service sets is base64url and dots (the challenge cookie and the
attestation token), which a cookie carries unquoted: its ``Set-Cookie`` line is written
directly, byte for byte what the standard library's ``Morsel`` writes for it (and so
aiohttp's ``set_cookie``). A request's ``Cookie`` header is read the same way when it
holds that cookie once, unquoted, as every client sends it back; anything else (quotes,
the name twice, other characters) goes to the standard library's full parser, so the
answer never differs from it.
"""

from __future__ import annotations

import re
from http.cookies import CookieError, Morsel, SimpleCookie

from enclave_runtime.kbs_protocol import SESSION_COOKIE
from kubetee.attestation_service.http_messages import HttpRequest, HttpResponse

PATH = "/kbs/v0"
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9._-]+")
_NAME_EQUALS = SESSION_COOKIE + "="


def session_cookie(request: HttpRequest) -> str | None:
    """The value of the request's session cookie, or None."""
    header = request.headers.get("cookie")
    if header is None:
        return None
    if '"' not in header and header.count(_NAME_EQUALS) == 1:
        for part in header.split(";"):
            name, _, value = part.strip().partition("=")
            if name == SESSION_COOKIE and _PLAIN_VALUE.fullmatch(value):
                return value
    return parsed_cookie(header)


def parsed_cookie(header: str) -> str | None:
    """The session cookie as the standard library's parser reads ``header`` (None when
    it is absent or the header is not a cookie list)."""
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return None
    morsel = jar.get(SESSION_COOKIE)
    return None if morsel is None else morsel.value


def set_session_cookie(response: HttpResponse, value: str, max_age: int) -> None:
    """Set the session cookie: sent back only over HTTPS, to the KBS paths, never to
    scripts or from other sites."""
    if _PLAIN_VALUE.fullmatch(value):
        response.add_header(
            "Set-Cookie",
            f"{SESSION_COOKIE}={value}; HttpOnly; Max-Age={max_age}; Path={PATH}; "
            "SameSite=Strict; Secure",
        )
        return
    jar: SimpleCookie = SimpleCookie()
    jar[SESSION_COOKIE] = value  # quoted as a cookie value must be
    morsel: Morsel[str] = jar[SESSION_COOKIE]
    morsel["max-age"] = str(max_age)
    morsel["path"] = PATH
    morsel["secure"] = True
    morsel["httponly"] = True
    morsel["samesite"] = "Strict"
    response.add_header("Set-Cookie", morsel.OutputString())
