"""The /metrics endpoint helper and the metric names."""

from __future__ import annotations

import logging
import re
import socket

import pytest
from prometheus_client import CollectorRegistry

from kubetee.metrics import names
from kubetee.metrics.serve import package_version, start_metrics_server

from .conftest import scrape_url, value


def test_build_info_names_the_component_and_version(registry: CollectorRegistry) -> None:
    server = start_metrics_server("operator", 0, address="127.0.0.1", registry=registry)
    assert server is not None
    try:
        _, samples = scrape_url(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        server.close()

    assert value(samples, names.BUILD_INFO, component="operator", version=package_version()) == 1


def test_a_taken_port_is_logged_and_the_component_goes_on_without_metrics(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.ERROR):
            server = start_metrics_server(
                "node-agent", port, address="127.0.0.1", registry=registry
            )

    assert server is None
    assert f"cannot serve metrics on 127.0.0.1:{port}" in caplog.text
    assert "--metrics-port" in caplog.text


def test_names_follow_the_prometheus_conventions() -> None:
    for name in names.ALL_METRICS:
        assert re.fullmatch(r"kubetee_[a-z][a-z0-9_]*", name), name
    units = ("_bytes", "_seconds", "_total", "_info")
    counters = {n for n in names.ALL_METRICS if n.endswith("_total")}
    assert names.RECONCILE_DURATION_SECONDS.endswith("_seconds")
    assert all(n.endswith("_seconds") for n in names.HISTOGRAMS)
    assert {n for n in names.ALL_METRICS if "epc" in n and not n.endswith(units)} == set()
    assert counters >= {
        names.ATTESTATIONS_TOTAL,
        names.SECRETS_RELEASED_TOTAL,
        names.RECONCILES_TOTAL,
        names.RECONCILE_ERRORS_TOTAL,
    }
    assert sorted(set(names.DEFAULT_PORTS.values())) == [9090, 9091, 9092, 9093, 9094]
