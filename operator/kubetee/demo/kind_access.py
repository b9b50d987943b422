"""The kind cluster of ``kubetee kind`` as the kind demo and the kind suite use it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TextIO

from kubetee.cluster.layout import repo_root
from kubetee.cluster.toolchain import cache_dir
from kubetee.demo.errors import DemoError
from kubetee.image.base import ensure_base
from kubetee.image.build import build_image
from kubetee.image.errors import ImageError
from kubetee.image.pip_settings import host_pip_settings
from kubetee.kindcluster.cluster import KindCluster, default_config


class KindClusterAccess:
    """Creates or reuses the cluster; loads images into its nodes with ``kind load``."""

    def __init__(self, cluster: KindCluster) -> None:
        self.cluster = cluster

    def up(self) -> Path:
        self.cluster.up(default_config())
        return self.cluster.paths.kubeconfig

    def load_image(self, image: str) -> None:
        kind, name = str(self.cluster.kind), self.cluster.name
        command = [kind, "load", "docker-image", image, "--name", name]
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
        if result.returncode != 0:
            problem = result.stderr.strip()[-400:]
            raise DemoError(f"kind load docker-image {image} failed: {problem}")

    def image_id(self, image: str) -> str:
        command = ["docker", "image", "inspect", "--format", "{{.Id}}", image]
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
        if result.returncode != 0:
            raise DemoError(f"docker image inspect {image} failed: {result.stderr.strip()[-400:]}")
        return result.stdout.strip()


def build_local_image(image: str, out: TextIO = sys.stderr) -> None:
    """``kubetee image build`` on the locally made Python base."""
    try:
        base = ensure_base(cache_dir(), out)
        build_image(
            repo_root(),
            image,
            base,
            host_pip_settings(),
            logs=cache_dir() / "images" / "logs",
            out=out,
        )
    except ImageError as error:
        raise DemoError(str(error)) from None
