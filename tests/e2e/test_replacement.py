"""Replacing replicas after a policy change, on the real local cluster: by eviction
(PodDisruptionBudgets hold), within the Deployment's budget, and never while the
attestation service cannot be reached (which the EnclaveContainer's status names)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.attestation_support import (
    AttestationService,
    AttestingOperator,
    attestation_service,
    attesting_operator,
)
from tests.e2e.conftest import E2ECluster
from tests.e2e.operator_support import (
    SIMULATION_MRSIGNER,
    Api,
    api,
    condition,
    free_nodes,
)
from tests.e2e.operator_support import wait_for as wait
from tests.e2e.test_attestation import (
    _apply_ec,
    _attested,
    _attested_svn,
    _create_secret,
    _spec,
    _wait_attested,
)

pytestmark = pytest.mark.e2e
__all__ = ["api", "attestation_service", "attesting_operator", "free_nodes"]

EC_LABEL = "kubetee.io/enclave-container"


def _serving(api: Api, namespace: str, name: str) -> int:
    """Replicas attested by the service and Ready (all pods, terminating ones included)."""
    pods = api.core.list_namespaced_pod(namespace, label_selector=f"{EC_LABEL}={name}").items
    return sum(
        1
        for p in pods
        if p.metadata.deletion_timestamp is None
        and _attested(p)
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    )


class ServingWatch:
    """Samples the serving replicas in the background; remembers the fewest seen."""

    def __init__(self, api: Api, namespace: str, name: str) -> None:
        self.fewest: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(api, namespace, name))

    def _run(self, api: Api, namespace: str, name: str) -> None:
        while not self._stop.is_set():
            count = _serving(api, namespace, name)
            self.fewest = count if self.fewest is None else min(self.fewest, count)
            time.sleep(0.2)

    def __enter__(self) -> ServingWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _events(api: Api, namespace: str, reason: str) -> list[client.CoreV1Event]:
    return [e for e in api.core.list_namespaced_event(namespace).items if e.reason == reason]


@pytest.mark.usefixtures("free_nodes")
def test_a_policy_change_replaces_replicas_within_the_disruption_budget(
    cluster: E2ECluster,
    api: Api,
    attesting_operator: AttestingOperator,
    namespace: str,
) -> None:
    _create_secret(api, namespace)
    name = "budget"
    disruption = {"disruption": {"maxUnavailable": 1}}
    _apply_ec(api, namespace, name, {**_spec({"minIsvSvn": 3}, replicas=3), **disruption})
    _wait_attested(api, namespace, name, 3, operator=attesting_operator, what="3 attested")
    policy = client.PolicyV1Api(cluster.api)
    budget = wait(
        "the operator's PodDisruptionBudget",
        lambda: next(iter(policy.list_namespaced_pod_disruption_budget(namespace).items), None),
        operator=attesting_operator,
    )
    assert budget.metadata.name == name
    assert budget.spec.max_unavailable == 1
    assert budget.spec.selector.match_labels == {EC_LABEL: name}
    assert budget.metadata.owner_references[0].kind == "EnclaveContainer"
    wait("all 3 serving", lambda: _serving(api, namespace, name) == 3 or None, timeout=60)

    with ServingWatch(api, namespace, name) as watch:
        _apply_ec(
            api, namespace, name, {**_spec({"minIsvSvn": 4}, replicas=3, isvSvn=4), **disruption}
        )
        wait(
            "3 replicas attested at isvSvn 4",
            lambda: (
                (
                    sum(1 for p in api.pods(namespace, name) if _attested_svn(p) == 4) >= 3
                    and _serving(api, namespace, name) >= 3
                )
                or None
            ),
            timeout=420,
            operator=attesting_operator,
        )
    assert watch.fewest is not None
    assert watch.fewest >= 2, f"serving replicas fell to {watch.fewest} (maxUnavailable 1)"

    # kubectl describe shows what is pinned and what the replicas proved.
    described = cluster.kubectl("describe", "ec", name, "-n", namespace).stdout
    assert SIMULATION_MRSIGNER in described
    assert (
        f"Pinned:  MRENCLAVE any, MRSIGNER {SIMULATION_MRSIGNER[:16]}"
        in " ".join(described.split(" "))
        or f"MRSIGNER {SIMULATION_MRSIGNER[:16]}…" in described
    )
    ec = api.ec(namespace, name)
    enclaves = ec["status"]["attestation"]["enclaves"]
    assert [(e["isvSvn"], e["replicas"], e["mrsigner"]) for e in enclaves] == [
        (4, 3, SIMULATION_MRSIGNER)
    ]

    # Without spec.disruption the operator's budget goes.
    _apply_ec(api, namespace, name, _spec({"minIsvSvn": 4}, replicas=3, isvSvn=4))
    wait(
        "the PodDisruptionBudget deleted",
        lambda: not policy.list_namespaced_pod_disruption_budget(namespace).items or None,
        operator=attesting_operator,
    )


@pytest.mark.usefixtures("free_nodes")
def test_without_the_attestation_service_nothing_is_replaced_and_the_status_names_it(
    api: Api,
    attesting_operator: AttestingOperator,
    attestation_service: AttestationService,
    namespace: str,
) -> None:
    _create_secret(api, namespace)
    name = "outage"
    _apply_ec(api, namespace, name, _spec(replicas=2))
    before = {
        p.metadata.uid
        for p in _wait_attested(api, namespace, name, 2, operator=attesting_operator, what="2")
    }
    url = attestation_service.urls[0]

    attestation_service.pause()
    try:
        ec: dict[str, Any] = wait(
            "Attested naming the unreachable service",
            lambda: (
                (found := api.ec(namespace, name))
                and condition(found, "Attested").get("reason") == "AttestationUnavailable"
                and found
            ),
            timeout=60,
            operator=attesting_operator,
        )
        assert url in condition(ec, "Attested")["message"]
        assert condition(ec, "Attested")["status"] == "Unknown"  # both still attested
        assert wait("a Warning Event", lambda: _events(api, namespace, "AttestationUnavailable"))

        # A policy the replicas' recorded claims fail, with the same pod template.
        _apply_ec(api, namespace, name, _spec({"mrenclave": ["ab" * 32]}, replicas=2))
        time.sleep(15)  # many sweeps (1 s each)
        assert {p.metadata.uid for p in api.pods(namespace, name)} == before
        assert not _events(api, namespace, "MeasurementMismatch")
        ec = api.ec(namespace, name)
        assert condition(ec, "Attested")["reason"] == "AttestationUnavailable"
    finally:
        attestation_service.resume()

    # Back: the replicas are replaced now, one at a time (the new ones fail too).
    # (The service's own MeasurementMismatch Events are about refused re-attestations.)
    event = wait(
        "a replica replaced for MeasurementMismatch",
        lambda: next(
            (
                e
                for e in _events(api, namespace, "MeasurementMismatch")
                if "no longer passes the changed attestation policy" in (e.message or "")
            ),
            None,
        ),
        timeout=90,
        operator=attesting_operator,
    )
    assert event.source.component == "kubetee-operator"
    assert len({p.metadata.uid for p in api.pods(namespace, name)} & before) >= 1
