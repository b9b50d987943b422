"""The enclave manifest: what the enclave runs and every file it trusts.

Like Gramine's manifest (``libos.entrypoint``, ``loader.argv``, ``sgx.trusted_files``
with their hashes, ``sgx.enclave_size``, ``sgx.max_threads``, ``sgx.isvprodid``,
``sgx.isvsvn``, ``sgx.debug``) and Occlum's ``Occlum.json``, as one JSON document,
``enclave.manifest.json``::

    {"entrypoint": "app/server.py", "args": ["--port", "8080"], "env": {},
     "trustedFiles": [{"path": "app/server.py", "sha256": "..."}],
     "heapMiB": 32, "threads": 4, "isvProdId": 1, "isvSvn": 2, "debug": false}

Paths are relative to the enclave's root directory (the manifest's directory unless
told otherwise). The entrypoint is itself a trusted file. An entrypoint ending in
``.py`` runs on the runtime's Python interpreter, which belongs to the runtime like a
LibOS (the runtime image is what provides it); any other entrypoint is executed directly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from enclave_runtime.enclave.errors import ManifestError, TrustedFileError

MANIFEST_FILE = "enclave.manifest.json"
SIGSTRUCT_FILE = "enclave.sig"
MAX_TRUSTED_FILES = 4096

RelativePath = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9_.+@-]+(/[A-Za-z0-9_.+@-]+)*$", max_length=1024),
]
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128)]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class TrustedFile(_Model):
    """A file the enclave loads only if its content hashes to ``sha256``."""

    path: RelativePath
    sha256: Sha256Hex

    @model_validator(mode="after")
    def _no_dot_segments(self) -> Self:
        if any(segment in {".", ".."} for segment in self.path.split("/")):
            raise ValueError(f"trusted file path {self.path!r} has a '.' or '..' segment")
        return self


class EnclaveManifest(_Model):
    """``enclave.manifest.json``."""

    version: int = Field(default=1, ge=1, le=1)
    entrypoint: RelativePath
    args: list[str] = Field(default_factory=list, max_length=256)
    env: dict[EnvName, str] = Field(default_factory=dict)
    trusted_files: list[TrustedFile] = Field(min_length=1, max_length=MAX_TRUSTED_FILES)
    heap_mi_b: int = Field(default=32, ge=1, le=1024 * 1024, alias="heapMiB")
    threads: int = Field(default=4, ge=1, le=256)
    isv_prod_id: int = Field(default=0, ge=0, le=0xFFFF)
    isv_svn: int = Field(default=0, ge=0, le=0xFFFF)
    debug: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        paths = [f.path for f in self.trusted_files]
        repeated = sorted({p for p in paths if paths.count(p) > 1})
        if repeated:
            raise ValueError(f"trusted file paths must be unique; repeated: {repeated}")
        if self.entrypoint not in paths:
            raise ValueError(f"the entrypoint {self.entrypoint!r} must be one of the trusted files")
        return self

    def trusted(self, path: str) -> TrustedFile:
        return next(f for f in self.trusted_files if f.path == path)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(by_alias=True), indent=2, sort_keys=True) + "\n"

    def measured_json(self) -> dict[str, object]:
        """The part measured into MRENCLAVE: everything but what the SIGSTRUCT carries
        (product id, SVN, DEBUG), so raising the SVN keeps MRENCLAVE, as in SGX."""
        return self.model_dump(by_alias=True, exclude={"isv_prod_id", "isv_svn", "debug"})


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def expand_paths(root: Path, names: Iterable[str]) -> list[str]:
    """Relative paths of the files named (a directory stands for every file below it)."""
    found: list[str] = []
    for name in names:
        target = root / name
        if target.is_dir():
            found.extend(
                p.relative_to(root).as_posix()
                for p in sorted(target.rglob("*"))
                if p.is_file() and "__pycache__" not in p.parts
            )
        elif target.is_file():
            found.append(target.relative_to(root).as_posix())
        else:
            raise TrustedFileError(f"trusted file {name!r} does not exist under {root}")
    return sorted(set(found))


def hash_files(root: Path, paths: Iterable[str]) -> list[TrustedFile]:
    """The trusted-file entries of ``paths`` under ``root``, hashed now."""
    entries = []
    for path in paths:
        try:
            entries.append(TrustedFile(path=path, sha256=sha256_file(root / path)))
        except OSError as exc:
            raise TrustedFileError(
                f"cannot read trusted file {path!r} under {root}: {exc.strerror or exc}"
            ) from None
        except ValidationError as exc:
            raise ManifestError(f"trusted file {path!r}: {first_error(exc)}") from None
    return entries


def parse_manifest(text: str | bytes, origin: str) -> EnclaveManifest:
    try:
        return EnclaveManifest.model_validate_json(text)
    except ValidationError as exc:
        raise ManifestError(
            f"{origin} is not a valid enclave manifest: {first_error(exc)}"
        ) from None


def load_manifest(path: Path) -> EnclaveManifest:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ManifestError(
            f"cannot read the enclave manifest {path}: {exc.strerror or exc}; "
            "create one with `kubetee enclave init`"
        ) from None
    return parse_manifest(text, str(path))


def first_error(exc: ValidationError) -> str:
    """The first problem of a validation error, with where it is, in one line."""
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "document"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"
