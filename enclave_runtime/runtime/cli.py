"""``kubetee runtime``: the enclave runtime sidecar, its startup probe, and measuring.

    kubetee runtime [run]                attest, deliver secrets, re-attest (env: settings)
    kubetee runtime probe --attested     exit 0 once attested (the startup probe)
    kubetee runtime measure --config JSON|@FILE [--files-dir DIR] [--signer-key PEM]
                                         print the MRENCLAVE/MRSIGNER of an enclave config
                                         (KUBETEE_ENCLAVE_CONFIG), to pin in a policy

Exit codes of ``run``: 0 stopped, 2 configuration, 3 attestation refused,
4 attestation or quoting service unreachable.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Any

from enclave_runtime.runtime.probe import marker_dir_from_env, probe

PROG = "kubetee runtime"
# The probes run this command every few seconds as a new process: only ``run`` and
# ``measure`` pay for the runtime's imports (aiohttp, pydantic, crypto), in this module.
_COMMANDS = "enclave_runtime.runtime.commands"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "runtime",
        help="the enclave runtime sidecar: attestation before secrets",
        description="Attest this replica's enclave and hand the released secrets to the "
        "workload; configured by KUBETEE_* environment variables.",
    )
    parser.set_defaults(func=_run)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    run = actions.add_parser("run", help="attest, deliver secrets and re-attest (the default)")
    run.set_defaults(func=_run)
    check = actions.add_parser("probe", help="startup probe: exit 0 once attested")
    check.add_argument(
        "--attested", action="store_true", help="pass once attested (the only check; default)"
    )
    check.add_argument(
        "--state-dir", type=Path, default=None, help="default: from the runtime's environment"
    )
    check.set_defaults(func=_probe)
    measure = actions.add_parser("measure", help="print the identity of an enclave config")
    measure.add_argument("--config", required=True, help="KUBETEE_ENCLAVE_CONFIG as JSON, or @FILE")
    measure.add_argument("--files-dir", type=Path, default=Path())
    measure.add_argument("--signer-key", type=Path, default=None)
    measure.set_defaults(func=_measure)


def _run(args: argparse.Namespace) -> int:
    code: int = importlib.import_module(_COMMANDS).run(args)
    return code


def _measure(args: argparse.Namespace) -> int:
    code: int = importlib.import_module(_COMMANDS).measure(args)
    return code


def _probe(args: argparse.Namespace) -> int:
    passed, message = probe(args.state_dir or marker_dir_from_env(os.environ))
    (sys.stdout if passed else sys.stderr).write(message + "\n")
    return 0 if passed else 1
