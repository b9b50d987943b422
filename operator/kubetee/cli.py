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


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command, or (``only``) just one subcommand's parser under it."""
    parser = argparse.ArgumentParser(
        prog="kubetee",
        description="KubeTEE: Intel SGX enclaves on Kubernetes, scheduled by EPC and attested "
        "before they get secrets.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command, module_name in SUBCOMMANDS.items():
        if only is None or command == only:
            importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # A named subcommand imports only its own module: probes run `kubetee runtime probe`
    # every few seconds, and the other components' imports would be most of its time.
    parser = build_parser(argv[0] if argv and argv[0] in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
