"""``kubetee cluster``: the local cluster (filled in by the foundation work)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "cluster", help="run the real Kubernetes control plane locally on loopback"
    )
    parser.set_defaults(func=lambda _args: 0)
