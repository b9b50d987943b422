"""``docker build`` of the repository's Dockerfile with this machine's pip settings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO

from kubetee.image.pip_settings import PipSettings
from kubetee.image.steps import run_step


def build_image(
    context: Path,
    tag: str,
    base: str,
    pip: PipSettings,
    *,
    logs: Path,
    out: TextIO,
) -> float:
    """Build ``tag`` from ``context``/Dockerfile on ``base``; seconds it took.

    The build shares the host's network (``--network host``) so pip reaches the index
    as this machine's pip does. Build arguments go through a file-less environment: their
    values (the CA bundle is large) come from the environment, named on the command line.
    """
    args = {"BASE_IMAGE": base, **pip.build_args()}
    command = ["docker", "build", "--network", "host", "--tag", tag]
    for name in args:
        command += ["--build-arg", name]
    command.append(str(context))
    env = {**os.environ, **args}
    return run_step(
        f"docker build {tag} (base {base})",
        command,
        logs / "docker-build.log",
        out,
        env=env,
        hint="Is the Docker engine running ('docker info')? Can pip reach its index?",
    )
