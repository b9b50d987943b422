"""Errors of the KBS protocol client side.

Hierarchy::

    KbsClientError              an attestation round did not yield the resources
    ├── KbsProtocolError        a payload is malformed or does not decrypt
    ├── KbsUnavailableError          the service cannot be reached or answers 5xx
    │   └── KbsConnectionLostError   a kept connection closed under a request
    └── KbsRefusedError              the service refused (4xx) and said why: ``reason``
"""

from __future__ import annotations


class KbsClientError(Exception):
    """An attestation round failed; the message says at which step and why."""


class KbsProtocolError(KbsClientError):
    """A payload does not follow the protocol (bad JSON, wrong key, bad JWE)."""


class KbsUnavailableError(KbsClientError):
    """The attestation service could not be reached or failed on its side."""


class KbsConnectionLostError(KbsUnavailableError):
    """The connection closed while a request was on it (the service closed it as idle
    just then, or restarted): a new round on a new connection may well succeed."""


class KbsRefusedError(KbsClientError):
    """The attestation service refused with an HTTP 4xx and a problem ``reason``."""

    def __init__(self, step: str, status: int, reason: str, detail: str) -> None:
        super().__init__(f"{step} refused ({status} {reason}): {detail}")
        self.step = step
        self.status = status
        self.reason = reason
        self.detail = detail
