"""``kubetee node-agent``: the device manager of a kubelet, for one simulated node.

Example::

    kubetee node-agent --node-name node-1 --plugin-dir /tmp/dp1 --kubeconfig kubeconfig.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import sys
from pathlib import Path
from typing import Any, Literal

from kubernetes import config as k8s_config
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from kubetee.deviceplugin.constants import DEFAULT_PLUGIN_DIR
from kubetee.deviceplugin.errors import SocketError
from kubetee.deviceplugin.lifecycle import run_until_terminated
from kubetee.deviceplugin.logs import configure_logging
from kubetee.deviceplugin.settings import describe_validation_error
from kubetee.k8s.sync_client import sync_api_client
from kubetee.metrics import start_metrics_server
from kubetee.metrics.node import NodeAgentCollector
from kubetee.nodeagent.agent import NodeAgent
from kubetee.nodeagent.node_status import KubernetesNodeApi, NodeStatusPublisher
from kubetee.nodeagent.pod_runtimes import PodRuntimes, run_with_pod_runtimes

PROG = "kubetee node-agent"


class NodeAgentSettings(BaseSettings):
    """Flags override ``KUBETEE_*`` env vars."""

    model_config = SettingsConfigDict(env_prefix="KUBETEE_", extra="forbid")

    node_name: str = Field(min_length=1)
    plugin_dir: Path = DEFAULT_PLUGIN_DIR
    kubeconfig: Path | None = None
    log_format: Literal["json", "text"] = "text"
    resync_interval: float = Field(default=10.0, gt=0)
    # Run pods' kubetee sidecars as local processes (pod_runtimes), as no kubelet does.
    run_pods: bool = True
    pods_dir: Path | None = None
    metrics_port: int = Field(default=9093, ge=0, le=65535)  # 0 turns /metrics off


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "node-agent",
        help="play the kubelet's device manager for one simulated (KWOK) node",
        description="Serve the kubelet Registration API on <plugin-dir>/kubelet.sock, follow the "
        "device plugins that register, and publish their devices in the Node's status.capacity "
        "and status.allocatable. Runs until SIGTERM; waits for the Node if it does not exist yet. "
        "Every flag can also be set as KUBETEE_<FLAG> in the environment.",
    )
    parser.add_argument("--node-name", help="Node to publish (env KUBETEE_NODE_NAME)")
    parser.add_argument(
        "--plugin-dir",
        type=Path,
        help=f"device-plugin directory (default {DEFAULT_PLUGIN_DIR})",
    )
    parser.add_argument(
        "--kubeconfig", type=Path, help="kubeconfig file (default: in-cluster, then ~/.kube/config)"
    )
    parser.add_argument("--log-format", choices=["json", "text"], help="default text")
    parser.add_argument(
        "--run-pods",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the kubetee sidecars of pods bound to the node as local processes (default on)",
    )
    parser.add_argument(
        "--pods-dir", type=Path, help="per-pod directories (default: <plugin-dir>/../pods)"
    )
    parser.add_argument(
        "--metrics-port", type=int, help="port of Prometheus /metrics (default 9093; 0: off)"
    )
    parser.set_defaults(func=run_agent)


def _fail(message: str, code: int = 2) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return code


def run_agent(args: argparse.Namespace) -> int:
    given = {
        "node_name": args.node_name,
        "plugin_dir": args.plugin_dir,
        "kubeconfig": args.kubeconfig,
        "log_format": args.log_format,
        "run_pods": getattr(args, "run_pods", None),
        "pods_dir": getattr(args, "pods_dir", None),
        "metrics_port": getattr(args, "metrics_port", None),
    }
    try:
        settings = NodeAgentSettings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as error:
        return _fail(describe_validation_error(error))
    if settings.kubeconfig is not None and not settings.kubeconfig.is_file():
        return _fail(f"--kubeconfig {settings.kubeconfig}: no such file")
    try:
        client = sync_api_client(settings.kubeconfig)
    except k8s_config.ConfigException as error:
        return _fail(f"cannot load Kubernetes credentials: {error}")
    configure_logging(settings.log_format)
    # The publisher reports a failed API call once; urllib3's per-retry warnings add nothing.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    publisher = NodeStatusPublisher(
        KubernetesNodeApi(client), settings.node_name, resync_interval=settings.resync_interval
    )
    agent = NodeAgent(settings.node_name, settings.plugin_dir, publisher)
    if settings.metrics_port:
        start_metrics_server(
            "node-agent",
            settings.metrics_port,
            collectors=(NodeAgentCollector(settings.node_name, lambda: publisher.published),),
        )
    main = agent.run
    if settings.run_pods:
        pods = PodRuntimes(
            settings.node_name,
            client,
            agent.plugins,
            settings.pods_dir or settings.plugin_dir.parent / "pods",
        )
        main = functools.partial(run_with_pod_runtimes, agent, pods)
    try:
        asyncio.run(run_until_terminated(main))
    except SocketError as error:
        return _fail(str(error), code=1)
    except OSError as error:
        return _fail(f"cannot serve in {settings.plugin_dir}: {error}", code=1)
    finally:
        client.close()  # type: ignore[no-untyped-call]
    return 0
