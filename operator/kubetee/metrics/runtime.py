"""The enclave runtime's metrics: the size of its enclave and the EPC it uses.

The runtime calls :func:`start_runtime_metrics` once; the rest comes from the same
environment the runtime reads (``KUBETEE_*``):

* ``KUBETEE_METRICS_PORT`` (default 9094; ``0`` turns the endpoint off) and
  ``KUBETEE_METRICS_ADDRESS`` (default ``0.0.0.0``);
* the enclave size: ``KUBETEE_EPC_MIB`` (the device plugin's Allocate), else
  ``epcMiB`` of ``KUBETEE_ENCLAVE_CONFIG`` (the operator's pod template);
* where the EPC in use comes from, ``KUBETEE_EPC_USAGE_SOURCE``: ``auto`` (default)
  measures it from the container's cgroup (:mod:`kubetee.metrics.cgroup`) when this
  process runs in a container whose cgroup it can read, else takes the reporters;
  ``cgroup`` or ``reported`` force one;
* the usage reporters (:mod:`kubetee.metrics.usage`): ``KUBETEE_PODINFO_DIR`` and
  ``KUBETEE_EPC_USAGE_FILE`` (default ``/run/kubetee/usage/epc``).

Outside a container (``KUBETEE_ROOT`` set: the local cluster's node agent runs the
runtime as a process beside the others of its node), paths are taken under the root,
the endpoint defaults to a free port on 127.0.0.1, and its address is announced in a
Prometheus file-based service discovery file, ``<root>/run/kubetee/metrics-target.json``,
which the custom metrics API server of the local cluster reads.
"""

from __future__ import annotations

import atexit
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from kubetee.metrics import names
from kubetee.metrics.cgroup import CGROUP_ROOT, CgroupMemory
from kubetee.metrics.serve import MetricsServer, start_metrics_server
from kubetee.metrics.usage import EnclaveUsage

log = logging.getLogger(__name__)

MIB = 1024 * 1024
DEFAULT_USAGE_FILE = Path("/run/kubetee/usage/epc")
TARGET_FILE = Path("/run/kubetee/metrics-target.json")
LABELS = ("namespace", "pod", "enclavecontainer")


class RuntimeMetricsSettings(BaseSettings):
    """The runtime's metrics settings, from its ``KUBETEE_*`` environment."""

    model_config = SettingsConfigDict(env_prefix="KUBETEE_", extra="ignore")

    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_address: str | None = None
    epc_mib: int | None = Field(default=None, ge=0)
    enclave_config: dict[str, Any] | None = None
    podinfo_dir: Path | None = None
    epc_usage_file: Path = DEFAULT_USAGE_FILE
    epc_usage_source: Literal["auto", "cgroup", "reported"] = "auto"
    cgroup_root: Path = CGROUP_ROOT
    root: Path | None = None

    def inside(self, path: Path) -> Path:
        """``path`` as this process sees it (under the root, outside a container)."""
        return path if self.root is None else self.root / path.relative_to(path.anchor)

    @property
    def size_bytes(self) -> int:
        if self.epc_mib:
            return self.epc_mib * MIB
        epc = (self.enclave_config or {}).get("epcMiB")
        return int(epc) * MIB if isinstance(epc, int) else 0

    @property
    def port(self) -> int | None:
        """The port to bind: None when turned off, 0 for a free one (outside a container)."""
        if self.metrics_port is not None:
            return self.metrics_port or None
        return 0 if self.root is not None else names.DEFAULT_PORTS["runtime"]

    @property
    def address(self) -> str:
        if self.metrics_address:
            return self.metrics_address
        return "127.0.0.1" if self.root is not None else "0.0.0.0"  # noqa: S104


class EnclaveUsageCollector(Collector):
    """The enclave's size and use, read at scrape time."""

    def __init__(self, labels: tuple[str, str, str], usage: EnclaveUsage) -> None:
        self._labels = labels
        self.usage = usage

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        size = GaugeMetricFamily(
            names.ENCLAVE_EPC_SIZE_BYTES,
            "EPC of this replica's enclave (its kubetee.io/epc request).",
            labels=LABELS,
        )
        size.add_metric(self._labels, self.usage.size_bytes)
        used = GaugeMetricFamily(
            names.ENCLAVE_EPC_USED_BYTES,
            "EPC this replica's enclave uses, at most its size.",
            labels=LABELS,
        )
        used.add_metric(self._labels, self.usage.used_bytes())
        errors = CounterMetricFamily(
            names.ENCLAVE_USAGE_READ_ERRORS_TOTAL,
            "Malformed EPC usage reports ignored (the last good figure is kept).",
            labels=LABELS,
        )
        errors.add_metric(self._labels, self.usage.read_errors)
        yield size
        yield used
        yield errors


def start_runtime_metrics(
    namespace: str,
    pod: str,
    enclave_container: str,
    *,
    registry: CollectorRegistry = REGISTRY,
) -> MetricsServer | None:
    """Serve this replica's enclave metrics; None (logged) if they cannot be served."""
    try:
        settings = RuntimeMetricsSettings()
    except ValidationError as error:
        log.error("runtime metrics disabled, bad setting: %s", _brief(error))  # noqa: TRY400
        return None
    port = settings.port
    if port is None:
        return None
    if settings.size_bytes == 0:
        log.warning("runtime metrics: enclave size unknown (no KUBETEE_EPC_MIB); reporting 0")
    usage = EnclaveUsage(
        size_bytes=settings.size_bytes,
        podinfo_dir=settings.podinfo_dir and settings.inside(settings.podinfo_dir),
        usage_file=settings.inside(settings.epc_usage_file),
        measure=measured_usage(settings),
    )
    collector = EnclaveUsageCollector((namespace, pod, enclave_container), usage)
    server = start_metrics_server(
        "runtime",
        port,
        address=settings.address,
        registry=registry,
        collectors=(collector,),
    )
    if server is not None and settings.root is not None:
        announce(
            settings.inside(TARGET_FILE),
            f"{settings.address}:{server.port}",
            {"namespace": namespace, "pod": pod, "enclavecontainer": enclave_container},
        )
    return server


def measured_usage(settings: RuntimeMetricsSettings) -> Callable[[], int] | None:
    """The cgroup measurement to use, or None for the reporters (logged either way)."""
    if settings.epc_usage_source == "reported":
        log.info("EPC in use: reported (annotation or usage file), as configured")
        return None
    # Outside a container (KUBETEE_ROOT: the local cluster) this process's cgroup is the
    # user's session, not an enclave's: measure only what a container holds.
    in_container = settings.root is None
    memory = CgroupMemory.discover(settings.cgroup_root) if in_container else None
    if memory is None:
        if settings.epc_usage_source == "cgroup":
            return _unmeasurable(settings.cgroup_root)
        log.info("EPC in use: reported (no container cgroup to measure)")
        return None
    log.info("EPC in use: measured from %s", memory.stat_file)
    return memory.used_bytes


def _unmeasurable(root: Path) -> Callable[[], int]:
    def measure() -> int:
        raise OSError(f"no readable memory cgroup of this container under {root}")

    return measure


def announce(path: Path, target: str, labels: dict[str, str]) -> None:
    """Write a Prometheus file_sd file naming this endpoint; removed at exit."""
    document = [{"targets": [target], "labels": labels}]
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(document) + "\n")
    temporary.replace(path)
    atexit.register(path.unlink, missing_ok=True)


def _brief(error: ValidationError) -> str:
    return "; ".join(
        f"KUBETEE_{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in error.errors()
    )
