"""The service's settings for nonces and workers."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from kubetee.attestation_service import server
from kubetee.attestation_service.server import worker_count
from kubetee.attestation_service.settings import MAX_WORKERS, ServiceSettings
from kubetee.attestation_service.usable_cpus import usable_cpus


def _settings(**values: object) -> ServiceSettings:
    files = {"tls_cert": Path("c"), "tls_key": Path("k"), "session_key_file": Path("s")}
    return ServiceSettings(**(files | {"collateral": Path("collateral.json")} | values))


def test_nonces_are_bound_to_their_replica_by_default() -> None:
    settings = _settings()
    assert settings.replay_ledger == "replica"
    assert settings.workers == 1


def test_workers_zero_means_one_per_usable_cpu() -> None:
    assert worker_count(_settings(workers=0)) == usable_cpus()
    assert worker_count(_settings(workers=3)) == 3


def test_workers_zero_stops_at_the_most_workers_one_may_ask_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server, "usable_cpus", lambda: 2 * MAX_WORKERS)  # a big node
    assert worker_count(_settings(workers=0)) == MAX_WORKERS
    with pytest.raises(ValidationError):
        _settings(workers=MAX_WORKERS + 1)


def test_several_workers_cannot_share_a_one_process_ledger() -> None:
    with pytest.raises(ValidationError, match="replay-ledger=replica"):
        _settings(workers=2, replay_ledger="memory")
    assert _settings(workers=2, replay_ledger="lease").workers == 2
