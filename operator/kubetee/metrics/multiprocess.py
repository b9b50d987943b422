"""Metrics of a component that runs in several processes, served as one.

``kubetee attestation-service serve --workers N`` runs N processes on one port; only one
can listen on the metrics port. With :func:`enable`, every process (this one and the
processes it spawns afterwards, which inherit the environment) keeps its metric values
in files of one per-run directory, and :func:`collecting_registry` sums them at every
scrape (prometheus_client's multiprocess mode): counters and histograms add up, gauges
follow their ``multiprocess_mode``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from prometheus_client import CollectorRegistry, multiprocess, values

ENVIRONMENT = "PROMETHEUS_MULTIPROC_DIR"


def enable(prefix: str) -> Path:
    """Make a fresh directory for this run's metric files and switch this process, and
    every process it starts from now on, to keeping its values there."""
    directory = Path(tempfile.mkdtemp(prefix=f"{prefix}-metrics-"))
    os.environ[ENVIRONMENT] = str(directory)
    # prometheus_client picks the value class once, at import: pick again. Metrics made
    # before this (none of the service's: they are made when it starts) keep the old one.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return directory


def collecting_registry(directory: Path) -> CollectorRegistry:
    """A registry that reads every process's metrics from ``directory`` at each scrape."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return registry


def process_ended(pid: int, directory: Path) -> None:
    """Drop the live gauges of a process that has ended (its counters still count)."""
    multiprocess.mark_process_dead(pid, path=str(directory))  # type: ignore[no-untyped-call]


def remove(directory: Path) -> None:
    os.environ.pop(ENVIRONMENT, None)
    shutil.rmtree(directory, ignore_errors=True)
