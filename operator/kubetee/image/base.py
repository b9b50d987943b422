"""A Python base image made from Debian packages, where no image registry is reachable.

``debootstrap --variant=minbase`` lays out Debian bookworm with Debian's ``python3``
(3.11, as ``python:3.11-slim``) and ``python3-venv``; docs, man pages and apt's lists
are dropped and the tree is ``docker import``ed. The root filesystem's tarball is kept
under the cache directory and the image is tagged by the recipe's version, so a machine
makes it once and a Docker engine that lost its images gets it back without debootstrap.
The Debian mirror is the one this machine's apt uses.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from kubetee.image.errors import ImageError
from kubetee.image.steps import run_step

SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv")
RECIPE_VERSION = "1"  # bump when the recipe below changes
REPOSITORY = "kubetee/python-base"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
# Not needed at run time; removing them keeps the image small.
PRUNED = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/cache/debconf/templates.dat-old",
    "var/log",
)
CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)
_ONE_LINE = re.compile(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)")


@dataclass(frozen=True)
class BaseImage:
    """The base image of this recipe, by tag, and where its tarball is cached."""

    tag: str
    tarball: Path

    @classmethod
    def for_cache(cls, cache: Path) -> BaseImage:
        key = hashlib.sha256(f"{SUITE} {' '.join(PACKAGES)} {RECIPE_VERSION}".encode()).hexdigest()
        version = f"{SUITE}-{key[:12]}"
        return cls(f"{REPOSITORY}:{version}", cache / "images" / f"python-base-{version}.tar")


def debian_mirror(sources: tuple[Path, ...] = APT_SOURCES) -> str:
    """The first Debian archive this machine's apt names for the suite, else the default."""
    files: list[Path] = []
    for source in sources:
        if source.is_dir():
            files += sorted(source.glob("*.sources")) + sorted(source.glob("*.list"))
        elif source.is_file():
            files.append(source)
    for path in files:
        mirror = _mirror_in(path.read_text(errors="replace"), path.suffix == ".sources")
        if mirror:
            return mirror
    return DEFAULT_MIRROR


def _mirror_in(text: str, deb822: bool) -> str | None:
    if not deb822:
        for line in text.splitlines():
            match = _ONE_LINE.match(line)
            if match and match.group(2) == SUITE:
                return match.group(1)
        return None
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            name, colon, value = line.partition(":")
            if colon and not line.startswith((" ", "#")):
                fields[name.strip().lower()] = value.strip()
        if SUITE in fields.get("suites", "").split() and "deb" in fields.get("types", "").split():
            return fields.get("uris", "").split()[0] if fields.get("uris") else None
    return None


def image_exists(tag: str) -> bool:
    result = subprocess.run(
        ["docker", "image", "inspect", tag], capture_output=True, check=False, timeout=60
    )
    return result.returncode == 0


def ensure_base(cache: Path, out: TextIO, *, force: bool = False) -> str:
    """The base image's tag, made (or re-imported from the cached tarball) if missing."""
    base = BaseImage.for_cache(cache)
    logs = cache / "images" / "logs"
    if not force and image_exists(base.tag):
        out.write(f"  {base.tag}: present\n")
        return base.tag
    if force or not base.tarball.exists():
        _make_rootfs_tarball(base.tarball, logs, out)
    with base.tarball.open("rb") as tarball:
        changes = [arg for change in CHANGES for arg in ("--change", change)]
        run_step(
            f"docker import {base.tag}",
            ["docker", "import", *changes, "-", base.tag],
            logs / "docker-import.log",
            out,
            stdin=tarball,
            hint="Is the Docker engine running ('docker info')?",
        )
    return base.tag


def _make_rootfs_tarball(tarball: Path, logs: Path, out: TextIO) -> None:
    if os.geteuid() != 0:
        raise ImageError(
            "debootstrap must run as root to make the Python base image: run this command "
            "as root, or build on another base: kubetee image build --base python:3.11-slim"
        )
    if shutil.which("debootstrap") is None:
        raise ImageError(
            "debootstrap is not installed: apt-get install debootstrap "
            "(deploy/kind/setup-docker-engine.sh installs it)"
        )
    mirror = debian_mirror()
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kubetee-rootfs-", dir=tarball.parent) as work:
        rootfs = Path(work) / "rootfs"
        run_step(
            f"debootstrap {SUITE} ({', '.join(PACKAGES)}) from {mirror}",
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(rootfs),
                mirror,
            ],
            logs / "debootstrap.log",
            out,
            hint="Is the Debian mirror reachable (apt-get update)?",
        )
        for relative in PRUNED:
            shutil.rmtree(rootfs / relative, ignore_errors=True)
        (rootfs / "var" / "log").mkdir(exist_ok=True)
        partial = tarball.with_suffix(".tar.partial")
        run_step(
            "pack the root filesystem",
            ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."],
            logs / "tar.log",
            out,
        )
        partial.replace(tarball)
