"""Errors of the image tooling."""


class ImageError(Exception):
    """An image could not be made; the message says what to do."""
