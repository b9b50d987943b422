"""``kubetee cluster up | down | status | kubeconfig | build | update-platform``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from kubetee.cluster.cluster import LocalCluster
from kubetee.cluster.errors import ClusterError
from kubetee.cluster.layout import ClusterLayout
from kubetee.cluster.toolchain import COMPONENTS, Builder


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(
            f"must be at least 1 (got {number}): the cluster needs a simulated SGX node to "
            "schedule enclaves on, for example --nodes 3"
        )
    return number


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "cluster",
        help="run the real Kubernetes control plane locally on loopback",
        description="A local Kubernetes cluster: the real kube-apiserver, scheduler and "
        "controller-manager built from Go modules, etcd, and KWOK-simulated SGX nodes.",
    )
    parser.add_argument(
        "--name",
        default="default",
        help="cluster name; each name has its own work directory and ports",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="work directory (default: ~/.local/state/kubetee/clusters/NAME)",
    )
    commands = parser.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)

    up = commands.add_parser("up", help="build what is missing and start the cluster")
    up.add_argument(
        "--nodes",
        type=_positive,
        default=None,
        help="number of simulated SGX nodes (default 3, or as last time)",
    )
    up.add_argument(
        "--epc-mib",
        type=_positive,
        default=None,
        help="simulated EPC per node in MiB, advertised by its device plugin "
        "(default 128, or as last time)",
    )
    up.add_argument(
        "--enclaves",
        type=_positive,
        default=None,
        help="enclave slots per node (default 16, or as last time)",
    )
    up.add_argument(
        "--no-node-services",
        dest="node_services",
        action="store_false",
        default=None,
        help="do not run the per-node device plugin, node agent and quoting "
        "service (for large scale tests that set node capacity themselves)",
    )
    up.set_defaults(func=_up)

    down = commands.add_parser("down", help="stop every process the cluster started")
    down.add_argument(
        "--purge",
        action="store_true",
        help="also delete the work directory (etcd data, certificates, logs)",
    )
    down.set_defaults(func=_down)

    status = commands.add_parser("status", help="say what runs and where the logs are")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_status)

    kubeconfig = commands.add_parser("kubeconfig", help="print the admin kubeconfig path")
    kubeconfig.set_defaults(func=_kubeconfig)

    build = commands.add_parser("build", help="build the cluster binaries into the cache only")
    build.set_defaults(func=_build)

    update = commands.add_parser(
        "update-platform",
        help="microcode update of a node: its platform to the newest UpToDate TCB level",
        description="Raise a node's simulated CPUSVN/PCESVN to its family's newest UpToDate "
        "level (after `kubetee pcs publish-tcb --authority-dir WORKDIR/sgx-pcs ...`), keep "
        "its PPID and keys, and register it again; its enclaves keep running.",
    )
    update.add_argument("--node", required=True, help="the node to update")
    update.set_defaults(func=_update_platform)

    supervise = commands.add_parser(
        "supervise",
        help="restart the cluster's processes when they die (`up` starts it; runs until stopped)",
    )
    supervise.set_defaults(func=_supervise)


def _cluster(args: argparse.Namespace) -> LocalCluster:
    return LocalCluster(ClusterLayout.for_name(args.name, args.workdir))


def _fail(exc: ClusterError) -> int:
    sys.stderr.write(f"error: {exc}\n")
    return 1


def _up(args: argparse.Namespace) -> int:
    try:
        cluster = _cluster(args)
        nodes = args.nodes or (cluster.layout.nodes if cluster.layout.state_file.exists() else 3)
        cluster.up(
            nodes, epc_mib=args.epc_mib, enclaves=args.enclaves, node_services=args.node_services
        )
    except ClusterError as exc:
        return _fail(exc)
    layout = cluster.layout
    sys.stdout.write(
        f"Cluster '{layout.name}' is ready: {nodes} SGX node(s), API at {layout.apiserver_url}\n"
        f"  kubeconfig: {layout.kubeconfig}\n"
        f"  logs:       {layout.log_dir}\n"
        "Use it with:\n"
        f"  export KUBECONFIG={layout.kubeconfig}\n"
        f"  export PATH={layout.bin_dir}:$PATH   # kubectl and helm\n"
        "  kubectl get nodes\n"
    )
    return 0


def _down(args: argparse.Namespace) -> int:
    try:
        cluster = _cluster(args)
        stopped = cluster.down(purge=args.purge)
    except ClusterError as exc:
        return _fail(exc)
    what = ", ".join(stopped) if stopped else "nothing was running"
    sys.stdout.write(f"Cluster '{cluster.layout.name}' stopped ({what}).\n")
    return 0


def _status(args: argparse.Namespace) -> int:
    try:
        cluster = _cluster(args)
    except ClusterError as exc:
        return _fail(exc)
    layout = cluster.layout
    components = cluster.status()
    if args.json:
        sys.stdout.write(
            json.dumps(
                {
                    "name": layout.name,
                    "workdir": str(layout.workdir),
                    "kubeconfig": str(layout.kubeconfig),
                    "ports": layout.ports,
                    "running": cluster.is_running(),
                    "components": [
                        {"name": c.name, "pid": c.pid, "log": c.log_file} for c in components
                    ],
                },
                indent=2,
            )
            + "\n"
        )
        return 0
    state = "running" if cluster.is_running() else "stopped"
    sys.stdout.write(f"Cluster '{layout.name}' ({state}), work directory {layout.workdir}\n")
    for comp in components:
        where = f"pid {comp.pid}" if comp.pid else "not running"
        sys.stdout.write(f"  {comp.name:<40} {where:<14} log {comp.log_file}\n")
    if layout.ports:
        sys.stdout.write(f"  kubeconfig: {layout.kubeconfig}\n")
    return 0 if cluster.is_running() else 3


def _kubeconfig(args: argparse.Namespace) -> int:
    try:
        layout = _cluster(args).layout
    except ClusterError as exc:
        return _fail(exc)
    if not layout.kubeconfig.exists():
        sys.stderr.write(
            f"error: cluster '{layout.name}' has no kubeconfig yet; run "
            "'kubetee cluster up' first.\n"
        )
        return 1
    sys.stdout.write(f"{layout.kubeconfig}\n")
    return 0


def _update_platform(args: argparse.Namespace) -> int:
    from kubetee.cluster.node_services import platform_dir  # noqa: PLC0415
    from kubetee.cluster.platform_update import update_node_platform  # noqa: PLC0415

    try:
        layout = _cluster(args).layout
        if not platform_dir(layout, args.node).is_dir():
            sys.stderr.write(f"error: cluster '{layout.name}' has no node {args.node!r}\n")
            return 2
        result = update_node_platform(layout, args.node)
    except ClusterError as exc:
        return _fail(exc)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


def _build(_args: argparse.Namespace) -> int:
    try:
        Builder().ensure(COMPONENTS)
    except ClusterError as exc:
        return _fail(exc)
    return 0


def _supervise(args: argparse.Namespace) -> int:
    from kubetee.cluster.supervisor import Supervisor  # noqa: PLC0415 - this command only

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        layout = _cluster(args).layout
    except ClusterError as exc:
        return _fail(exc)
    try:
        Supervisor(layout).run_forever()
    except KeyboardInterrupt:
        return 0
    return 0
