"""Errors of the demo."""


class DemoError(Exception):
    """A demo step failed; the message says what happened and where to look."""
