"""Metrics of several worker processes served as one (``--workers N``).

A spawned "first worker" enables multiprocess metrics as ``attestation-service serve``
does, starts a second worker process (which inherits the setting), both count
attestations, and the first serves the sum on its metrics port, as scraped over HTTP.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from kubetee.metrics import multiprocess
from kubetee.metrics.attestation import ACCEPTED, ACCEPTED_REASON, REFUSED, AttestationMetrics
from kubetee.metrics.serve import start_metrics_server

from .conftest import scrape_url


def _count(accepted: int, refused: int) -> None:
    metrics = AttestationMetrics(CollectorRegistry())  # values go to the per-run files
    for _ in range(accepted):
        metrics.observe_attestation(ACCEPTED, ACCEPTED_REASON, 0.003)
    for _ in range(refused):
        metrics.observe_attestation(REFUSED, "MeasurementMismatch", 0.002)


def _first_worker(answers: Queue[Any]) -> None:
    directory = multiprocess.enable("kubetee-test")
    other = multiprocessing.get_context("spawn").Process(target=_count, args=(2, 1))
    other.start()
    _count(3, 0)
    other.join(timeout=60)
    server = start_metrics_server(
        "attestation-service", 0, registry=multiprocess.collecting_registry(directory)
    )
    assert server is not None
    try:
        answers.put((str(directory), scrape_url(f"http://127.0.0.1:{server.port}/metrics")[1]))
    finally:
        server.close()
        multiprocess.remove(directory)


def test_every_workers_attestations_are_served_by_the_first() -> None:
    context = multiprocessing.get_context("spawn")
    answers: Queue[Any] = context.Queue()
    worker = context.Process(target=_first_worker, args=(answers,))
    worker.start()
    directory, samples = answers.get(timeout=120)
    worker.join(timeout=30)
    assert worker.exitcode == 0
    counted = {
        (labels["result"], labels["reason"]): value
        for labels, value in samples["kubetee_attestations_total"]
    }
    assert counted == {(ACCEPTED, ACCEPTED_REASON): 5.0, (REFUSED, "MeasurementMismatch"): 1.0}
    durations = {
        labels["result"]: value
        for labels, value in samples["kubetee_attestation_duration_seconds_count"]
    }
    assert durations == {ACCEPTED: 5.0, REFUSED: 1.0}
    assert samples["kubetee_build_info"][0][0]["component"] == "attestation-service"
    assert not Path(directory).exists()  # removed with the run
