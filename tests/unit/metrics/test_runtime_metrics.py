"""The runtime's EPC usage: its reporters, its limits, and its /metrics endpoint."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from kubetee.metrics import names
from kubetee.metrics.errors import UsageValueError
from kubetee.metrics.runtime import TARGET_FILE, start_runtime_metrics
from kubetee.metrics.usage import EnclaveUsage, parse_usage

from .conftest import scrape_url, value

MIB = 1024 * 1024
SIZE = 64 * MIB


@pytest.mark.parametrize(
    ("reported", "used"),
    [
        ("48Mi", 48 * MIB),
        ("512Ki", 512 * 1024),
        ("75%", 48 * MIB),
        ("12.5%", 8 * MIB),
        (" 0 ", 0),
        ("1048576", MIB),
        ("1Gi", SIZE),  # an enclave cannot commit more EPC than it was built with
        ("250%", SIZE),
    ],
)
def test_usage_is_a_size_or_a_percentage_within_the_enclave(reported: str, used: int) -> None:
    assert parse_usage(reported, SIZE) == used


@pytest.mark.parametrize("reported", ["", "-5Mi", "lots", "48 MiB", "50%%", "0x10"])
def test_malformed_usage_is_refused_with_the_accepted_forms(reported: str) -> None:
    with pytest.raises(UsageValueError, match=r"size such as 48Mi or a percentage such as 75%"):
        parse_usage(reported, SIZE)


def _annotations(directory: Path, **annotations: str) -> Path:
    """A downward API annotations file as the kubelet writes it."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"{k}={json.dumps(v)}\n" for k, v in sorted(annotations.items()))
    (directory / "annotations").write_text(lines)
    return directory


def test_the_annotation_wins_over_the_workloads_file_and_nothing_means_idle(
    tmp_path: Path,
) -> None:
    podinfo = _annotations(tmp_path / "podinfo", other="x")
    usage_file = tmp_path / "usage" / "epc"
    usage = EnclaveUsage(SIZE, podinfo_dir=podinfo, usage_file=usage_file)

    idle = usage.used_bytes()
    usage_file.parent.mkdir()
    usage_file.write_text("16Mi\n")
    from_workload = usage.used_bytes()
    _annotations(podinfo, **{names.SIMULATED_USAGE_ANNOTATION: "50%"})
    from_annotation = usage.used_bytes()

    assert (idle, from_workload, from_annotation) == (0, 16 * MIB, 32 * MIB)


def test_a_malformed_report_keeps_the_last_figure_counts_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    podinfo = _annotations(tmp_path, **{names.SIMULATED_USAGE_ANNOTATION: "40Mi"})
    usage = EnclaveUsage(SIZE, podinfo_dir=podinfo)
    assert usage.used_bytes() == 40 * MIB

    _annotations(podinfo, **{names.SIMULATED_USAGE_ANNOTATION: "most of it"})
    with caplog.at_level(logging.WARNING):
        figures = [usage.used_bytes() for _ in range(3)]

    assert figures == [40 * MIB] * 3
    assert usage.read_errors == 3
    assert len([r for r in caplog.records if "ignoring the EPC usage" in r.message]) == 1


def test_runtime_outside_a_container_serves_on_a_free_port_and_announces_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry: CollectorRegistry
) -> None:
    root = tmp_path / "root"
    _annotations(root / "etc" / "podinfo", **{names.SIMULATED_USAGE_ANNOTATION: "25%"})
    monkeypatch.setenv("KUBETEE_ROOT", str(root))
    monkeypatch.setenv("KUBETEE_PODINFO_DIR", "/etc/podinfo")
    monkeypatch.setenv("KUBETEE_EPC_MIB", "64")
    monkeypatch.delenv("KUBETEE_METRICS_PORT", raising=False)

    server = start_runtime_metrics("shop", "payments-1", "payments", registry=registry)
    assert server is not None
    try:
        target = json.loads((root / TARGET_FILE.relative_to("/")).read_text())
        _, samples = scrape_url(f"http://{target[0]['targets'][0]}/metrics")
    finally:
        server.close()

    assert target[0]["targets"] == [f"127.0.0.1:{server.port}"]
    assert target[0]["labels"] == {
        "namespace": "shop",
        "pod": "payments-1",
        "enclavecontainer": "payments",
    }
    pod = {"namespace": "shop", "pod": "payments-1", "enclavecontainer": "payments"}
    assert value(samples, names.ENCLAVE_EPC_SIZE_BYTES, **pod) == SIZE
    assert value(samples, names.ENCLAVE_EPC_USED_BYTES, **pod) == 16 * MIB
    assert value(samples, names.ENCLAVE_USAGE_READ_ERRORS_TOTAL, **pod) == 0
    assert value(samples, names.BUILD_INFO, component="runtime") == 1


def test_enclave_size_comes_from_the_operators_config_without_allocate_env(
    monkeypatch: pytest.MonkeyPatch, registry: CollectorRegistry
) -> None:
    monkeypatch.setenv("KUBETEE_METRICS_PORT", "0")
    assert start_runtime_metrics("shop", "p", "ec", registry=registry) is None  # turned off

    monkeypatch.delenv("KUBETEE_METRICS_PORT")
    monkeypatch.delenv("KUBETEE_EPC_MIB", raising=False)
    monkeypatch.setenv("KUBETEE_ROOT", "/nonexistent-root")
    monkeypatch.setenv("KUBETEE_ENCLAVE_CONFIG", json.dumps({"epcMiB": 32}))
    monkeypatch.setattr("kubetee.metrics.runtime.announce", lambda *_args: None)
    server = start_runtime_metrics("shop", "p", "ec", registry=registry)
    assert server is not None
    try:
        _, samples = scrape_url(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        server.close()

    assert value(samples, names.ENCLAVE_EPC_SIZE_BYTES, pod="p") == 32 * MIB
    assert value(samples, names.ENCLAVE_EPC_USED_BYTES, pod="p") == 0
