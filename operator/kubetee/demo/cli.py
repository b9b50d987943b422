"""``kubetee demo``: the whole story on the local cluster."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kubetee.cluster.errors import ClusterError
from kubetee.cluster.layout import ClusterLayout
from kubetee.demo.errors import DemoError


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="run the KubeTEE story on the local cluster",
        description="Bring up the local cluster, install the chart, deploy an "
        "EnclaveContainer, attest it, refuse a tampered one, autoscale it on EPC.",
    )
    parser.add_argument("--cluster", default="default", help="local cluster name")
    parser.add_argument("--nodes", type=int, default=3, help="simulated SGX nodes")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="the cluster's work directory (see cluster)"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from kubetee.demo.story import Demo  # noqa: PLC0415 - heavy imports only for the demo

    try:
        Demo(ClusterLayout.for_name(args.cluster, args.workdir), args.nodes).run()
    except (DemoError, ClusterError) as exc:
        sys.stderr.write(
            f"\ndemo failed: {exc}\nLogs of every process: `kubetee cluster --name "
            f"{args.cluster} status`.\n"
        )
        return 1
    return 0
