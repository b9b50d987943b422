"""The ``kbs-session-id`` cookie on the wire, read and written without building a cookie
jar per request.

Every value this service sets is base64url and dots (the challenge cookie and the
attestation token), which a cookie carries unquoted: its ``Set-Cookie`` line is written
directly, byte for byte what the standard library's ``Morsel`` writes for it (and so
aiohttp's ``set_cookie``). A request's ``Cookie`` header is read leniently, as servers
read cookies (RFC 6265 5.4): whatever value it yields must still verify as a session
this service signed.
"""

from __future__ import annotations

import re
from http.cookies import Morsel, SimpleCookie

from enclave_runtime.kbs_protocol import SESSION_COOKIE
from kubetee.attestation_service.http_messages import HttpRequest, HttpResponse

PATH = "/kbs/v0"
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9._-]+")


def session_cookie(request: HttpRequest) -> str | None:
    """The value of the request's session cookie, or None."""
    header = request.headers.get("cookie")
    return None if header is None else parsed_cookie(header)


def parsed_cookie(header: str) -> str | None:
    """The session cookie in ``header``: pairs split at ``;``, blanks around names and
    values ignored, a part that is no ``name=value`` pair skipped (the pairs after it
    still count), a double-quoted value without its quotes, the first pair with the
    name taken. None when there is none."""
    for part in header.split(";"):
        name, equals, value = part.partition("=")
        if equals and name.strip() == SESSION_COOKIE:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                return value[1:-1]
            return value
    return None


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
