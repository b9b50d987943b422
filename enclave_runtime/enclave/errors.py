"""Why an enclave cannot be built or launched.

Hierarchy (exit code of the ``kubetee enclave`` commands)::

    EnclaveError                    base, bad input                            2
    ├── ManifestError               the manifest is missing or malformed       2
    ├── TrustedFileError            a trusted file is missing or was modified  5
    ├── LaunchRefusedError          EINIT refuses: signature or measurement    5
    └── ImageBuildError             docker failed while wrapping an image      6
"""

from __future__ import annotations

from typing import ClassVar


class EnclaveError(Exception):
    """The enclave cannot be built, measured or launched; the message says why."""

    exit_code: ClassVar[int] = 2


class ManifestError(EnclaveError):
    """The manifest is missing, not JSON, or not a valid enclave manifest."""


class TrustedFileError(EnclaveError):
    """A trusted file is missing or its content differs from the manifest's hash."""

    exit_code = 5


class LaunchRefusedError(EnclaveError):
    """EINIT's refusal: the SIGSTRUCT does not verify or does not match the measurement."""

    exit_code = 5


class ImageBuildError(EnclaveError):
    """Wrapping a container image failed (docker missing, image absent, build error)."""

    exit_code = 6
