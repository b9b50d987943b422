"""``kubetee quoting-service``: serve a node's quotes; make and register its platform.

kubetee quoting-service provision --platform-dir DIR --node NAME [--tcb-status STATUS]
    [--fmspc HEX] [--ca processor|platform]
kubetee quoting-service register --platform-dir DIR --pcs-url URL --token-file F
    [--pcs-ca F] [--wait-seconds N]
kubetee quoting-service serve --platform-dir DIR --socket PATH [--node NAME]
kubetee quoting-service update --platform-dir DIR --cpusvn HEX [--pcesvn N]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from enclave_runtime.quoting import provision as provisioning
from enclave_runtime.quoting import registration
from enclave_runtime.quoting.server import run
from enclave_runtime.sgx.authority import DEFAULT_FMSPC

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "quoting-service",
        help="the node quoting service (like aesmd) and node platform provisioning",
        description="Quote enclave reports with this node's simulated SGX platform, over a "
        "Unix socket; make the node's platform keys and register them with the cluster's "
        "simulated PCS for their PCK certificate.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    serve = actions.add_parser("serve", help="serve quotes on a Unix socket")
    serve.add_argument("--platform-dir", type=Path, required=True, help="the node's platform")
    serve.add_argument("--socket", type=Path, required=True, help="Unix socket to listen on")
    serve.add_argument(
        "--node", default="", help="node name reported by /v1/platform (default: provisioned)"
    )
    serve.set_defaults(func=_serve)

    provision = actions.add_parser(
        "provision", help="make a node's simulated platform keys (kept if present)"
    )
    provision.add_argument("--platform-dir", type=Path, required=True, help="output directory")
    provision.add_argument("--node", required=True, help="the node this platform belongs to")
    provision.add_argument(
        "--tcb-status", default="UpToDate", help="TCB level of the platform (default UpToDate)"
    )
    provision.add_argument(
        "--fmspc",
        default=DEFAULT_FMSPC.hex().upper(),
        help="the platform family, 6 bytes of hex (default %(default)s)",
    )
    provision.add_argument(
        "--ca",
        choices=registration.PCK_CA_TYPES,
        default="processor",
        help="the PCK CA that certifies it",
    )
    provision.set_defaults(func=_provision)

    register_parser = actions.add_parser(
        "register", help="get the platform's PCK certificate from the simulated PCS"
    )
    register_parser.add_argument("--platform-dir", type=Path, required=True)
    register_parser.add_argument(
        "--pcs-url", required=True, help="https URL of `kubetee pcs serve`"
    )
    register_parser.add_argument(
        "--token-file",
        type=Path,
        required=True,
        help="this node's ServiceAccount token for audience kubetee-pcs (re-read each try)",
    )
    register_parser.add_argument("--pcs-ca", type=Path, help="CA bundle of the PCS's certificate")
    register_parser.add_argument(
        "--wait-seconds",
        type=float,
        default=300.0,
        help="keep retrying an unreachable PCS this long (default %(default)s)",
    )
    register_parser.set_defaults(func=_register)

    update = actions.add_parser(
        "update",
        help="update the platform's TCB (microcode: CPUSVN; platform software: PCESVN)",
        description="Raise the platform's CPUSVN and/or PCESVN, keeping its PPID and keys, "
        "as a microcode or platform software update does. Its PCK certificate stated the "
        "old TCB and is removed: run `register` next; the running quoting service switches "
        "to the new certificate once it is saved, and enclaves keep running.",
    )
    update.add_argument("--platform-dir", type=Path, required=True)
    update.add_argument("--cpusvn", required=True, help="the new CPUSVN, 32 hex digits")
    update.add_argument("--pcesvn", type=int, help="the new PCESVN (default: unchanged)")
    update.set_defaults(func=_update)


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not provisioning.registered(args.platform_dir):
        sys.stderr.write(
            f"kubetee quoting-service: error: {args.platform_dir} holds no registered "
            "platform; run `kubetee quoting-service provision` and `... register` first\n"
        )
        return 2
    node = args.node or provisioning.node_name_of(args.platform_dir, "unknown")
    run(args.platform_dir, args.socket, node)
    return 0


def _provision(args: argparse.Namespace) -> int:
    try:
        fmspc = bytes.fromhex(args.fmspc)
        keys = provisioning.provision_keys(
            args.platform_dir,
            args.node,
            tcb_status=args.tcb_status,
            fmspc=fmspc,
            ca=args.ca,
        )
    except ValueError as error:
        sys.stderr.write(f"kubetee quoting-service: error: {error}\n")
        return 2
    sys.stdout.write(
        json.dumps(
            {
                "node": args.node,
                "platform_dir": str(args.platform_dir),
                "fmspc": keys.identity.fmspc.hex().upper(),
                "ca": keys.identity.pck_ca_type,
                "registered": provisioning.registered(args.platform_dir),
            }
        )
        + "\n"
    )
    return 0


def _update(args: argparse.Namespace) -> int:
    try:
        cpusvn = bytes.fromhex(args.cpusvn) if args.cpusvn.isascii() else b""
    except ValueError:
        cpusvn = b""
    try:
        keys = provisioning.update_platform(args.platform_dir, cpusvn, args.pcesvn)
    except (OSError, KeyError) as error:
        sys.stderr.write(
            f"kubetee quoting-service: error: {args.platform_dir} holds no provisioned "
            f"platform ({error}); run `kubetee quoting-service provision` first\n"
        )
        return 2
    except ValueError as error:
        sys.stderr.write(f"kubetee quoting-service: error: {error}\n")
        return 2
    sys.stdout.write(
        json.dumps(
            {
                "platform_dir": str(args.platform_dir),
                "cpusvn": keys.identity.cpusvn.hex(),
                "pcesvn": keys.identity.pcesvn,
                "registered": False,
                "next": "kubetee quoting-service register (a PCK certificate for the new TCB)",
            }
        )
        + "\n"
    )
    return 0


def _register(args: argparse.Namespace) -> int:
    if provisioning.registered(args.platform_dir):
        sys.stdout.write(f"{args.platform_dir}: platform already registered\n")
        return 0
    deadline = time.monotonic() + args.wait_seconds
    attempt = 0
    while True:
        attempt += 1
        try:
            token = args.token_file.read_text().strip()
            platform = registration.register(
                args.platform_dir, args.pcs_url, token, ca_file=args.pcs_ca
            )
        except OSError as error:
            problem = registration.RegistrationError(
                f"cannot read {args.token_file}: {error.strerror}",
                code="TOKEN_UNREADABLE",
                retryable=True,
            )
        except registration.RegistrationError as error:
            problem = error
        else:
            identity = platform.identity
            sys.stdout.write(
                f"registered platform FMSPC {identity.fmspc.hex().upper()} "
                f"({identity.pck_ca_type} CA) with the PCS at {args.pcs_url}\n"
            )
            return 0
        if not problem.retryable or time.monotonic() >= deadline:
            sys.stderr.write(f"kubetee quoting-service: error: {problem.message}\n")
            return 1
        sys.stderr.write(f"attempt {attempt}: {problem.message}; retrying in 2s\n")
        sys.stderr.flush()
        time.sleep(2.0)
