"""The ``kubetee`` command: one entry point for every component.

Each subcommand lives with its component, in a module exposing ``register(subparsers)``
that adds its parser and sets ``func`` (taking the parsed namespace, returning an exit
code). Modules are imported only when listed here, so a component's heavy imports
cost nothing to the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> module that registers it
SUBCOMMANDS: dict[str, str] = {
    "attestation-service": "kubetee.attestation_service.cli",
    "cluster": "kubetee.cluster.cli",
    "kind": "kubetee.kindcluster.cli",
    "demo": "kubetee.demo.cli",
    "crds": "kubetee.api.cli",
    "operator": "kubetee.run",
    "device-plugin": "kubetee.deviceplugin.cli",
    "node-agent": "kubetee.nodeagent.cli",
    "metrics-apiserver": "kubetee.metrics.apiserver.cli",
    "quoting-service": "enclave_runtime.quoting.cli",
    "pcs": "kubetee.pcs.cli",
    "runtime": "enclave_runtime.runtime.cli",
    "enclave": "enclave_runtime.enclave.cli",
    "quote": "kubetee.attestation.cli",
    "image": "kubetee.image.cli",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubetee",
        description="KubeTEE: Intel SGX enclaves on Kubernetes, scheduled by EPC and attested "
        "before they get secrets.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in SUBCOMMANDS.values():
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
