"""Serve a component's ``/metrics`` on its own port, with its build info.

Each component calls :func:`start_metrics_server` once at start. A port that cannot
be bound is logged and the component carries on without metrics: losing the
endpoint must not take down a device plugin or an enclave runtime.
"""

from __future__ import annotations

import logging
import platform
import threading
from dataclasses import dataclass
from importlib import metadata
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, Info, start_http_server
from prometheus_client.registry import Collector

from kubetee.metrics.names import BUILD_INFO

log = logging.getLogger(__name__)

# Names of the build info's labels; values come from the installed package.
_BUILD_LABELS = ("component", "version", "python_version")


def package_version() -> str:
    try:
        return metadata.version("kubetee")
    except metadata.PackageNotFoundError:  # running from a checkout without install
        return "0.0.0+unknown"


def register_build_info(component: str, registry: CollectorRegistry = REGISTRY) -> Info:
    """``kubetee_build_info{component, version, python_version} 1`` on ``registry``."""
    info = Info(
        BUILD_INFO.removesuffix("_info"),
        "KubeTEE build that runs this component (always 1).",
        registry=registry,
    )
    info.info(
        dict(
            zip(
                _BUILD_LABELS,
                (component, package_version(), platform.python_version()),
                strict=True,
            )
        )
    )
    return info


@dataclass
class MetricsServer:
    """A running ``/metrics`` endpoint; ``port`` is the bound one (useful with port 0)."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_metrics_server(
    component: str,
    port: int,
    *,
    address: str = "0.0.0.0",  # noqa: S104 - scraped from other pods by default
    registry: CollectorRegistry = REGISTRY,
    collectors: tuple[Collector, ...] = (),
) -> MetricsServer | None:
    """Register the build info and ``collectors``, serve ``registry`` on ``address:port``.

    Port 0 picks a free port (see :attr:`MetricsServer.port`). Returns None, after an
    error log line naming the port, when the port cannot be bound.
    """
    register_build_info(component, registry)
    for collector in collectors:
        registry.register(collector)
    try:
        server, thread = start_http_server(port, addr=address, registry=registry)
    except OSError as error:
        log.error(  # noqa: TRY400 - the reason is the message; a trace adds nothing
            "%s: cannot serve metrics on %s:%d (%s); running without a /metrics endpoint. "
            "Choose another port with --metrics-port.",
            component,
            address,
            port,
            error.strerror or error,
        )
        return None
    metrics = MetricsServer(server, thread)
    log.info("%s: serving Prometheus metrics on %s:%d/metrics", component, address, metrics.port)
    return metrics
