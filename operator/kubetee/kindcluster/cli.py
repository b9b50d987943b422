"""``kubetee kind build | up | down | status``: a kind cluster built offline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kubetee.cluster.errors import ClusterError
from kubetee.cluster.toolchain import format_duration
from kubetee.kindcluster.cluster import DEFAULT_NAME, KindCluster, default_config
from kubetee.kindcluster.docker import Docker
from kubetee.kindcluster.nodeimage import node_image_ref


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "kind",
        help="a kind cluster (real kubelets and containers) built without image registries",
        description="A kind cluster: one control plane and two SGX-labelled workers, from a "
        "node image assembled once per machine from Debian packages and Go modules.",
    )
    parser.add_argument("--name", default=DEFAULT_NAME, help="kind cluster name")
    commands = parser.add_subparsers(dest="kind_command", metavar="ACTION", required=True)

    build = commands.add_parser("build", help="build kind and the node image into the cache")
    build.add_argument(
        "--offline",
        action="store_true",
        help="build the node image even if the official one could be pulled",
    )
    build.set_defaults(func=_build)

    up = commands.add_parser("up", help="build what is missing, create or reuse the cluster")
    up.add_argument(
        "--config",
        type=Path,
        default=None,
        help="kind config (default: deploy/kind/kind-config.yaml of this checkout)",
    )
    up.add_argument("--offline", action="store_true", help="as for build")
    up.set_defaults(func=_up)

    down = commands.add_parser("down", help="delete the cluster (the built image stays)")
    down.set_defaults(func=_down)

    status = commands.add_parser("status", help="say what is built and what runs")
    status.set_defaults(func=_status)


def _fail(exc: ClusterError) -> int:
    sys.stderr.write(f"error: {exc}\n")
    return 1


def _build(args: argparse.Namespace) -> int:
    try:
        image = KindCluster(args.name).build(allow_pull=not args.offline)
    except ClusterError as exc:
        return _fail(exc)
    sys.stdout.write(f"Node image ready: {image}\n")
    return 0


def _up(args: argparse.Namespace) -> int:
    cluster = KindCluster(args.name)
    try:
        seconds = cluster.up(args.config or default_config(), allow_pull=not args.offline)
    except ClusterError as exc:
        return _fail(exc)
    kubeconfig = cluster.paths.kubeconfig
    sys.stdout.write(
        f"Kind cluster '{cluster.name}' is ready ({format_duration(seconds)}): "
        f"{', '.join(cluster.nodes())}\n"
        f"  kubeconfig: {kubeconfig}\n"
        f"  logs:       {cluster.paths.log_dir}\n"
        "Use it with:\n"
        f"  export KUBECONFIG={kubeconfig}\n"
        f"  export PATH={cluster.kind.parent}:{cluster.kubectl.parent}:$PATH   # kind, kubectl\n"
        "  kubectl get nodes -L kubetee.io/sgx\n"
        f"  kind load docker-image IMAGE --name {cluster.name}   # a locally built image\n"
    )
    return 0


def _down(args: argparse.Namespace) -> int:
    cluster = KindCluster(args.name)
    try:
        deleted = cluster.delete()
    except ClusterError as exc:
        return _fail(exc)
    what = "deleted" if deleted else "did not exist"
    sys.stdout.write(f"Kind cluster '{cluster.name}' {what}.\n")
    return 0


def _status(args: argparse.Namespace) -> int:
    cluster = KindCluster(args.name)
    image = node_image_ref()
    try:
        docker = Docker()
        docker.check_engine()
    except ClusterError as exc:
        sys.stdout.write(f"Docker engine: not usable ({exc})\n")
        return 3
    built = "built" if docker.image_exists(image) else "not built ('kubetee kind build')"
    sys.stdout.write(f"Docker engine: ready\nNode image {image}: {built}\n")
    sys.stdout.write(
        f"kind binary {cluster.kind}: {'built' if cluster.kind.is_file() else 'not built'}\n"
    )
    if not cluster.exists():
        sys.stdout.write(f"Kind cluster '{cluster.name}': does not exist ('kubetee kind up')\n")
        return 3
    sys.stdout.write(
        f"Kind cluster '{cluster.name}': nodes {', '.join(cluster.nodes())}\n"
        f"  kubeconfig: {cluster.paths.kubeconfig}\n"
    )
    return 0
