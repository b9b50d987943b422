"""Why the enclave runtime stopped, and the exit code that tells the kubelet.

Hierarchy (exit code)::

    RuntimeFailure                  base                                     1
    ├── RuntimeConfigError          the pod's environment is unusable        2
    ├── AttestationRefusedError     the service refused the evidence         3
    └── AttestationUnavailableError service or quoting service unreachable   4
"""

from __future__ import annotations

from typing import ClassVar


class RuntimeFailure(Exception):  # noqa: N818  # names the outcome, not an error kind
    """The runtime cannot (or can no longer) hand secrets to the workload."""

    exit_code: ClassVar[int] = 1


class RuntimeConfigError(RuntimeFailure):
    """The environment the operator or device plugin set is missing or malformed."""

    exit_code = 2


class AttestationRefusedError(RuntimeFailure):
    """The attestation service refused; ``reason`` is its CamelCase reason."""

    exit_code = 3

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class AttestationUnavailableError(RuntimeFailure):
    """Attestation could not complete for lack of a service (after retries)."""

    exit_code = 4
