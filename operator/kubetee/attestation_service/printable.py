"""Client-supplied text made safe for one log line, an Event or a problem detail.

A request path or a field value can carry line breaks (``%0A``) or terminal escapes
that would forge log lines; they are written as escapes, and long values are cut.
"""

from __future__ import annotations

DEFAULT_LIMIT = 200


def printable(value: object, limit: int = DEFAULT_LIMIT) -> str:
    """``value`` as text with every non-printable character escaped, at most ``limit``
    characters (then ``...``)."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit and text.isprintable():
        return text  # what the loop below gives it, at a fraction of the cost
    cleaned = "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text[: limit + 1]
    )
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "..."
