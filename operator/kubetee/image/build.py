"""``docker build`` of the repository's Dockerfile with this machine's pip settings.

The build context is streamed to Docker as a tar of exactly what the Dockerfile copies
(:data:`CONTEXT`), plus ``pip-ca.pem``, this machine's CA bundle for pip, when pip has
one configured: the bundle never enters the working tree, and only the build stage sees
it. The build shares the host's network (``--network host``) so pip reaches the index
as this machine's pip does.
"""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path
from typing import TextIO

from kubetee.image.pip_settings import PipSettings
from kubetee.image.steps import run_step

# The Dockerfile and what it copies; tests/unit/image checks the two agree.
CONTEXT = ("Dockerfile", "pyproject.toml", "README.md", "operator/kubetee", "enclave_runtime")
CA_FILE = "pip-ca.pem"
_SKIPPED = ("__pycache__", ".mypy_cache", ".pytest_cache")


def _keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    parts = Path(info.name).parts
    if any(part in _SKIPPED for part in parts) or info.name.endswith(".pyc"):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_context(repo: Path, archive: Path, ca_bundle: str | None) -> None:
    """The build context as a tar: :data:`CONTEXT` from ``repo``, and the CA bundle."""
    # GNU format: the classic builder misreads some PAX archives Python writes.
    with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT) as tar:
        for name in CONTEXT:
            tar.add(repo / name, arcname=name, filter=_keep)
        if ca_bundle:
            with tempfile.NamedTemporaryFile("w", suffix=".pem") as ca:
                ca.write(ca_bundle)
                ca.flush()
                tar.add(ca.name, arcname=CA_FILE, filter=_keep)


def build_image(
    repo: Path,
    tag: str,
    base: str,
    pip: PipSettings,
    *,
    logs: Path,
    out: TextIO,
) -> float:
    """Build ``tag`` from ``repo``'s Dockerfile on ``base``; the seconds it took."""
    command = ["docker", "build", "--network", "host", "--tag", tag]
    command += ["--build-arg", f"BASE_IMAGE={base}"]
    for name, value in pip.build_args().items():
        command += ["--build-arg", f"{name}={value}"]
    command.append("-")
    with tempfile.TemporaryDirectory(prefix="kubetee-context-") as scratch:
        archive = Path(scratch) / "context.tar"
        write_context(repo, archive, pip.ca_bundle())
        with archive.open("rb") as context:
            return run_step(
                f"docker build {tag} (base {base})",
                command,
                logs / "docker-build.log",
                out,
                stdin=context,
                hint="Is the Docker engine running ('docker info')? Can pip reach its index?",
            )
