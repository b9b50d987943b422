"""Handing released secrets to the workload through the shared memory-backed volume.

A secret with ``file`` becomes that file under the secrets directory, mode 0400. A
sidecar cannot set another container's environment, so secrets with ``env`` are
written together to ``kubetee.env`` (mode 0400) as ``export NAME='value'`` lines
that the workload sources before it starts (``. /run/kubetee/secrets/kubetee.env``).
Every file is written to a temporary name and renamed, so a reader never sees half a
secret, and re-attestation replaces values in place.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from enclave_runtime.runtime.errors import RuntimeConfigError
from enclave_runtime.runtime.settings import SecretSpec

ENV_FILE = "kubetee.env"
SECRET_FILE_MODE = 0o400
_TMP_SUFFIX = ".kubetee-tmp"


def deliver(secrets_dir: Path, specs: Sequence[SecretSpec], values: Mapping[str, bytes]) -> None:
    """Write every secret of ``specs`` (values by name) where its spec says."""
    secrets_dir.mkdir(parents=True, exist_ok=True)
    env_lines: list[str] = []
    for spec in specs:
        value = values[spec.name]
        if spec.file is not None:
            _write_atomically(_inside(secrets_dir, spec.file), value)
        elif spec.env is not None:
            try:
                text = value.decode()
            except UnicodeDecodeError:
                raise RuntimeConfigError(
                    f"secret {spec.name!r} is delivered as env {spec.env} but is not UTF-8 "
                    "text; deliver it as a file"
                ) from None
            env_lines.append(f"export {spec.env}={shlex.quote(text)}\n")
    if env_lines:
        _write_atomically(secrets_dir / ENV_FILE, "".join(env_lines).encode())


def wipe(secrets_dir: Path, specs: Sequence[SecretSpec]) -> None:
    """Remove every delivered secret (after a failed re-attestation, or at shutdown)."""
    for spec in specs:
        if spec.file is not None:
            _inside(secrets_dir, spec.file).unlink(missing_ok=True)
    (secrets_dir / ENV_FILE).unlink(missing_ok=True)


def _inside(secrets_dir: Path, relative: str) -> Path:
    target = (secrets_dir / relative).resolve()
    if not target.is_relative_to(secrets_dir.resolve()):
        raise RuntimeConfigError(f"secret file {relative!r} would leave {secrets_dir}")
    return target


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + _TMP_SUFFIX)
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE_MODE)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    temporary.replace(path)
