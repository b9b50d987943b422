"""``kubetee crds``: print, write or check the CRDs generated from the API models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kubetee.api.crdgen import RESOURCES, render, write_all


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "crds",
        help="print the kubetee.io CustomResourceDefinitions",
        description="The CRDs of EnclaveContainer and EPCPool, generated from the pydantic "
        "models. Prints them as one YAML stream (pipe into `kubectl apply -f -`), or writes "
        "or checks one file per CRD in a directory.",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--write", type=Path, metavar="DIR", help="write <plural>.kubetee.io.yaml files into DIR"
    )
    action.add_argument(
        "--check",
        type=Path,
        metavar="DIR",
        help="exit 1 if the files in DIR differ from the models (for CI)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.write is not None:
        for path in write_all(args.write):
            sys.stdout.write(f"wrote {path}\n")
        return 0
    if args.check is not None:
        stale = [
            resource.name
            for resource in RESOURCES
            if not (path := args.check / f"{resource.name}.yaml").exists()
            or path.read_text(encoding="utf-8") != render(resource)
        ]
        if stale:
            sys.stderr.write(
                f"error: out of date in {args.check}: {', '.join(stale)}; "
                f"run `kubetee crds --write {args.check}`\n"
            )
            return 1
        return 0
    sys.stdout.write("---\n".join(render(resource) for resource in RESOURCES))
    return 0
