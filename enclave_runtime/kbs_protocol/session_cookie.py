"""The ``kbs-session-id`` cookie, read from ``Set-Cookie`` as RFC 6265 (5.2, 5.3) has a
user agent read it.

A KBS client talks to one service and needs this one cookie, so it keeps the value
itself rather than in a general cookie jar (whose per-request domain, path and expiry
bookkeeping cost the client more CPU than building the request). The cookie's Path
(``/kbs/v0``) and Domain cover every request the client sends; what is honoured here:
the last ``Set-Cookie`` naming it wins, other cookies are ignored, and a ``Max-Age``
(first) or ``Expires`` in the past removes it, as a jar would.
"""

from __future__ import annotations

import calendar
import functools
from collections.abc import Iterable
from email.utils import parsedate_tz

from enclave_runtime.kbs_protocol.models import SESSION_COOKIE


def session_cookie_after(
    set_cookie_headers: Iterable[str], current: str | None, now: float
) -> str | None:
    """The session cookie's value once these ``Set-Cookie`` headers are applied to
    ``current``: ``None`` if one of them expires it."""
    value = current
    for header in set_cookie_headers:
        pair, _, attributes = header.partition(";")
        name, equals, raw_value = pair.partition("=")
        if not equals or name.strip() != SESSION_COOKIE:
            continue  # no name-value pair (RFC 6265 5.2 step 2), or another cookie
        value = None if _expired(attributes, now) else raw_value.strip()
    return value


def _expired(attributes: str, now: float) -> bool:
    """Whether the attributes expire the cookie at ``now``: ``Max-Age`` (it wins) of 0 or
    less, or an ``Expires`` date not after ``now``. An attribute value that does not
    parse is ignored, as RFC 6265 says; without either, the cookie lasts the session."""
    by_max_age, expires_at = _expiry(attributes)
    if by_max_age is not None:
        return by_max_age
    return expires_at is not None and expires_at <= now


# A service sends the same attributes with every session (Max-Age, or an Expires date
# that changes once a second): each is read once.
@functools.lru_cache(maxsize=64)
def _expiry(attributes: str) -> tuple[bool | None, float | None]:
    """Whether ``Max-Age`` expires the cookie (``None``: no valid one), and the time
    ``Expires`` names (``None``: no valid one); the last valid of each counts (5.3)."""
    by_max_age: bool | None = None
    expires_at: float | None = None
    for attribute in attributes.split(";"):
        name, _, value = attribute.partition("=")
        name, value = name.strip().lower(), value.strip()
        if name == "max-age" and value.isascii() and value.removeprefix("-").isdigit():
            by_max_age = int(value) <= 0
        elif name == "expires" and (parsed := parsedate_tz(value)) is not None:
            expires_at = float(calendar.timegm(parsed[:9]) - (parsed[9] or 0))
    return by_max_age, expires_at
