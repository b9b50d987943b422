"""``kubetee quoting-service``: serve a node's quotes, or provision a node's platform.

kubetee quoting-service serve --platform-dir DIR --socket PATH [--node NAME]
kubetee quoting-service provision --authority-dir DIR --platform-dir DIR --node NAME
    [--tcb-status STATUS]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from enclave_runtime.quoting import provision as provisioning
from enclave_runtime.quoting.server import run

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "quoting-service",
        help="the node quoting service (like aesmd) and node platform provisioning",
        description="Quote enclave reports with this node's simulated SGX platform, over a "
        "Unix socket; or provision a node's platform from the cluster's simulated authority.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    serve = actions.add_parser("serve", help="serve quotes on a Unix socket")
    serve.add_argument("--platform-dir", type=Path, required=True, help="the node's platform")
    serve.add_argument("--socket", type=Path, required=True, help="Unix socket to listen on")
    serve.add_argument(
        "--node", default="", help="node name reported by /v1/platform (default: provisioned)"
    )
    serve.set_defaults(func=_serve)

    provision = actions.add_parser("provision", help="issue a node's simulated platform")
    provision.add_argument(
        "--authority-dir",
        type=Path,
        required=True,
        help="the cluster's simulated authority (created if empty)",
    )
    provision.add_argument("--platform-dir", type=Path, required=True, help="output directory")
    provision.add_argument("--node", required=True, help="the node this platform belongs to")
    provision.add_argument(
        "--tcb-status", default="UpToDate", help="TCB level of the platform (default UpToDate)"
    )
    provision.set_defaults(func=_provision)


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not (args.platform_dir / "platform.json").exists():
        sys.stderr.write(
            f"kubetee quoting-service: error: {args.platform_dir} holds no platform; run "
            "`kubetee quoting-service provision` first\n"
        )
        return 2
    node = args.node or provisioning.node_name_of(args.platform_dir, "unknown")
    run(args.platform_dir, args.socket, node)
    return 0


def _provision(args: argparse.Namespace) -> int:
    try:
        platform = provisioning.provision(
            args.authority_dir, args.platform_dir, args.node, tcb_status=args.tcb_status
        )
    except ValueError as error:
        sys.stderr.write(f"kubetee quoting-service: error: {error}\n")
        return 2
    sys.stdout.write(
        json.dumps(
            {
                "node": args.node,
                "platform_dir": str(args.platform_dir),
                "fmspc": platform.identity.fmspc.hex().upper(),
            }
        )
        + "\n"
    )
    return 0
