"""``kubetee image``: build KubeTEE's container image without an image registry.

kubetee image base [--force]
kubetee image build [--tag T] [--base local|IMAGE]
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from kubetee.cluster.layout import repo_root
from kubetee.cluster.toolchain import cache_dir
from kubetee.image.base import ensure_base
from kubetee.image.build import build_image
from kubetee.image.errors import ImageError
from kubetee.image.pip_settings import host_pip_settings
from kubetee.image.steps import elapsed_text

DEFAULT_TAG = "kubetee/kubetee:0.1.0"
LOCAL_BASE = "local"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "image",
        help="build the KubeTEE image (on a Python base made from Debian packages)",
        description="Build KubeTEE's container image with the Docker engine, pulling nothing "
        "from an image registry unless --base names a registry image.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    base = actions.add_parser(
        "base",
        help="make the Python base image (debootstrap bookworm + python3), cached by version",
    )
    base.add_argument("--force", action="store_true", help="make it again even if cached")
    base.set_defaults(func=_base)
    build = actions.add_parser(
        "build", help="docker build the repository's Dockerfile with this machine's pip settings"
    )
    build.add_argument("--tag", default=DEFAULT_TAG, help=f"image name (default {DEFAULT_TAG})")
    build.add_argument(
        "--base",
        default=LOCAL_BASE,
        help="'local' (default): the base of 'kubetee image base', made if missing; "
        "or an image such as python:3.11-slim",
    )
    build.set_defaults(func=_build)


def _base(args: argparse.Namespace) -> int:
    try:
        ensure_base(cache_dir(), sys.stderr, force=args.force)
    except ImageError as error:
        sys.stderr.write(f"kubetee image base: error: {error}\n")
        return 1
    return 0


def _build(args: argparse.Namespace) -> int:
    start = time.monotonic()
    try:
        base = ensure_base(cache_dir(), sys.stderr) if args.base == LOCAL_BASE else args.base
        build_image(
            repo_root(),
            args.tag,
            base,
            host_pip_settings(),
            logs=cache_dir() / "images" / "logs",
            out=sys.stderr,
        )
    except ImageError as error:
        sys.stderr.write(f"kubetee image build: error: {error}\n")
        return 1
    sys.stderr.write(f"built {args.tag} in {elapsed_text(time.monotonic() - start)}\n")
    return 0
