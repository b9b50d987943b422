"""``kubetee demo``: the whole story on the local cluster, or with ``--kind`` on kind."""

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
    parser.add_argument(
        "--cluster", default=None, help="cluster name (default: 'default', with --kind 'kubetee')"
    )
    parser.add_argument("--nodes", type=int, default=3, help="simulated SGX nodes")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="the cluster's work directory (see cluster)"
    )
    parser.add_argument(
        "--kind",
        action="store_true",
        help="run it on a kind cluster (kubetee kind up), every component a pod "
        "(--nodes and --workdir do not apply)",
    )
    parser.add_argument(
        "--image", default="kubetee/kubetee:0.1.0", help="with --kind: the image to build"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.kind:
        return _run_on_kind(args)
    from kubetee.demo.story import Demo  # noqa: PLC0415 - heavy imports only for the demo

    try:
        Demo(ClusterLayout.for_name(args.cluster or "default", args.workdir), args.nodes).run()
    except (DemoError, ClusterError) as exc:
        sys.stderr.write(
            f"\ndemo failed: {exc}\nLogs of every process: `kubetee cluster --name "
            f"{args.cluster or 'default'} status`.\n"
        )
        return 1
    return 0


def _run_on_kind(args: argparse.Namespace) -> int:
    # Heavy imports only for the demo.
    from kubetee.demo.kind_access import KindClusterAccess, build_local_image  # noqa: PLC0415
    from kubetee.demo.kind_story import KindDemo  # noqa: PLC0415
    from kubetee.kindcluster.cluster import DEFAULT_NAME, KindCluster  # noqa: PLC0415

    try:
        cluster = KindCluster(args.cluster or DEFAULT_NAME)
        KindDemo(KindClusterAccess(cluster), args.image, build_local_image).run()
    except (DemoError, ClusterError) as exc:
        sys.stderr.write(
            f"\ndemo on kind failed: {exc}\nThe cluster keeps running: `kubetee kind status`; "
            "its pods: kubectl get pods -A (KUBECONFIG as `kubetee kind up` prints it).\n"
        )
        return 1
    return 0
