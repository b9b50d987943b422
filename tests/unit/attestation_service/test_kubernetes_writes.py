"""What the service writes to the apiserver per attestation: only what changed.

A fake CoreV1Api keeps one pod and applies the patches as the apiserver would (merge
patch of annotations, conditions merged by type), so each re-attestation reads what
the previous one wrote.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from kubetee.attestation.errors import DebugEnclaveError, IsvSvnTooLowError
from kubetee.attestation.verified import VerifiedQuote
from kubetee.attestation_service.cluster_cache import ClusterCache, _enclave_container, _pod
from kubetee.attestation_service.kubernetes_backend import (
    REFUSAL_EVENT_INTERVAL_SECONDS,
    KubernetesBackend,
)
from kubetee.attestation_service.names import ATTESTED_CONDITION, ATTESTED_UNTIL_ANNOTATION
from kubetee.attestation_service.sessions import PodRef

from .conftest import EC_NAME, NAMESPACE, ec_spec

POD = PodRef(NAMESPACE, "payments-1", "uid-1")
START = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@dataclass
class _Response:
    data: bytes


@dataclass
class FakeCore:
    """One pod; every write is logged as (verb, what)."""

    pod: dict[str, Any]
    writes: list[tuple[str, str]] = field(default_factory=list)

    def read_namespaced_pod(self, name: str, namespace: str, **_: Any) -> _Response:
        assert (namespace, name) == (POD.namespace, POD.name)
        return _Response(json.dumps(self.pod).encode())

    def patch_namespaced_pod(self, name: str, namespace: str, body: Any, **_: Any) -> None:
        self.writes.append(("patch", "pod"))
        annotations = self.pod["metadata"].setdefault("annotations", {})
        annotations.update(body["metadata"]["annotations"])

    def patch_namespaced_pod_status(self, name: str, namespace: str, body: Any, **_: Any) -> None:
        self.writes.append(("patch", "pod/status"))
        conditions = self.pod["status"].setdefault("conditions", [])
        for new in body["status"]["conditions"]:
            conditions[:] = [c for c in conditions if c["type"] != new["type"]] + [new]

    def create_namespaced_event(self, namespace: str, body: Any) -> None:
        self.writes.append(("create", f"Event {body['type']} {body['reason']}"))


@dataclass
class Live:
    """A synced cache that always holds what the fake apiserver holds now (as if the
    watch delivered every change at once)."""

    kind: str
    read: Any
    synced: bool = True

    def get(self, namespace: str, name: str) -> Any:
        return self.read(namespace, name)


def _cluster(apiserver: FakeCore) -> ClusterCache:
    ec = _enclave_container(
        {
            "metadata": {"name": EC_NAME, "namespace": NAMESPACE, "uid": "uid-ec"},
            "spec": ec_spec().model_dump(mode="json", by_alias=True, exclude_none=True),
        }
    )
    return ClusterCache.of(
        Live("pod", lambda *_: _pod(apiserver.pod)),
        Live("EnclaveContainer", lambda *_: ec),
        Live("Secret", lambda *_: None),
    )


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def apiserver() -> FakeCore:
    return FakeCore(
        {
            "metadata": {
                "name": POD.name,
                "namespace": NAMESPACE,
                "uid": POD.uid,
                "labels": {"kubetee.io/enclave-container": EC_NAME},
            },
            "spec": {"nodeName": "node-a"},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]},
        }
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def backend(apiserver: FakeCore, clock: Clock) -> KubernetesBackend:
    backend = KubernetesBackend(
        client.ApiClient(), _cluster(apiserver), instance="kbs-0", clock=clock
    )
    backend._core = apiserver  # the API objects the backend calls, faked
    return backend


def _verified(tcb_status: str = "UpToDate") -> VerifiedQuote:
    return VerifiedQuote(
        tcb_status=tcb_status,
        advisory_ids=(),
        mrenclave=bytes(range(32)),
        mrsigner=bytes(32),
        isv_prod_id=7,
        isv_svn=3,
        debug=False,
        report_data=bytes(64),
        fmspc=bytes(6),
        valid_until=START + timedelta(days=30),
    )


async def _attest(backend: KubernetesBackend, verified: VerifiedQuote, until: datetime) -> None:
    await backend.attested(await backend.workload_of(POD), verified, until)


def _condition(apiserver: FakeCore) -> dict[str, str]:
    return next(c for c in apiserver.pod["status"]["conditions"] if c["type"] == ATTESTED_CONDITION)


async def test_a_first_attestation_marks_the_pod_and_says_so_once(
    backend: KubernetesBackend, apiserver: FakeCore
) -> None:
    await _attest(backend, _verified(), START)

    assert apiserver.writes == [
        ("patch", "pod"),
        ("patch", "pod/status"),
        ("create", "Event Normal Attested"),
    ]
    assert _condition(apiserver)["status"] == "True"


async def test_a_steady_re_attestation_only_extends_the_validity(
    backend: KubernetesBackend, apiserver: FakeCore
) -> None:
    await _attest(backend, _verified(), START)
    condition = _condition(apiserver)
    apiserver.writes.clear()

    await _attest(backend, _verified(), START + timedelta(minutes=2))

    # One write: the new attested-until; neither the condition nor an Event.
    assert apiserver.writes == [("patch", "pod")]
    assert apiserver.pod["metadata"]["annotations"][ATTESTED_UNTIL_ANNOTATION] == (
        "2026-11-30T12:02:00Z"
    )
    assert _condition(apiserver) == condition


async def test_nothing_is_written_when_nothing_changed(
    backend: KubernetesBackend, apiserver: FakeCore
) -> None:
    await _attest(backend, _verified(), START)
    apiserver.writes.clear()

    await _attest(backend, _verified(), START)

    assert apiserver.writes == []


async def test_a_changed_status_patches_the_condition_and_says_so(
    backend: KubernetesBackend, apiserver: FakeCore
) -> None:
    await _attest(backend, _verified(), START)
    since = _condition(apiserver)["lastTransitionTime"]
    apiserver.writes.clear()

    await _attest(backend, _verified("SWHardeningNeeded"), START)

    assert apiserver.writes == [
        ("patch", "pod"),  # the claims now name the new TCB status
        ("patch", "pod/status"),
        ("create", "Event Normal Attested"),
    ]
    assert "SWHardeningNeeded" in _condition(apiserver)["message"]
    assert _condition(apiserver)["lastTransitionTime"] == since  # still True since then


async def test_a_withdrawn_attestation_is_marked_again(
    backend: KubernetesBackend, apiserver: FakeCore
) -> None:
    await _attest(backend, _verified(), START)
    withdrawn = {**_condition(apiserver), "status": "False", "reason": "AttestationExpired"}
    apiserver.pod["status"]["conditions"] = [withdrawn]
    apiserver.writes.clear()

    await _attest(backend, _verified(), START + timedelta(minutes=5))

    assert ("patch", "pod/status") in apiserver.writes
    assert ("create", "Event Normal Attested") in apiserver.writes
    assert _condition(apiserver)["status"] == "True"


async def test_repeated_refusals_are_recorded_once_a_minute(
    backend: KubernetesBackend, apiserver: FakeCore, clock: Clock
) -> None:
    workload = await backend.workload_of(POD)
    debug = DebugEnclaveError("the enclave is a debug enclave")
    stale = IsvSvnTooLowError("isvSvn 3 is below 4")

    for _ in range(5):
        await backend.refused(workload, debug)
    await backend.refused(workload, stale)  # another reason is news
    clock.now += REFUSAL_EVENT_INTERVAL_SECONDS
    await backend.refused(workload, debug)  # a minute later, said again
    await backend.refused(replace(workload, pod=PodRef(NAMESPACE, "other", "uid-2")), debug)

    assert apiserver.writes == [
        ("create", "Event Warning DebugEnclaveRejected"),
        ("create", "Event Warning IsvSvnTooLow"),
        ("create", "Event Warning DebugEnclaveRejected"),
        ("create", "Event Warning DebugEnclaveRejected"),
    ]
