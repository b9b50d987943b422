"""The upkeep's replacements against a recording API: evictions, never deletions; a 429
leaves the replica serving and is retried; no eviction while the service is down."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes.aio import client

from kubetee.attestation_service.replicas import replica_attestation
from kubetee.controller.service_health import REACHABLE, ServiceHealth, unreachable
from kubetee.controller.views import deployment_view, pod_view, resource_view
from kubetee.k8s.writes import ObjectRef
from kubetee.reconcile.attestation_upkeep import AttestationUpkeep, Indexes, UpkeepSettings
from tests.unit.controller.builders import SIGNER, ec_spec, pod

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
KEY = ("demo", "demo")
OLD_CLAIMS = {
    "mrenclave": "aa" * 32,
    "mrsigner": SIGNER,
    "isvProdId": 0,
    "isvSvn": 0,
    "debug": False,
    "tcbStatus": "UpToDate",
    "advisoryIds": [],
}


@dataclass
class RecordingCore:
    """CoreV1Api's calls the upkeep makes; ``evict_status`` answers evictions."""

    evict_status: int | None = None
    evictions: list[str] = field(default_factory=list)
    status_patches: list[str] = field(default_factory=list)

    async def create_namespaced_pod_eviction(self, name: str, namespace: str, body: Any) -> None:
        self.evictions.append(name)
        if self.evict_status is not None:
            raise client.ApiException(status=self.evict_status, reason="Too Many Requests")

    async def patch_namespaced_pod_status(self, name: str, *_: Any, **__: Any) -> None:
        self.status_patches.append(name)

    async def patch_namespaced_pod(self, name: str, *_: Any, **__: Any) -> None:
        raise AssertionError(f"no re-attestation request expected for {name}")


@dataclass
class RecordingEvents:
    events: list[tuple[str, str]] = field(default_factory=list)

    async def post_event(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason))


def _pod(name: str) -> dict[str, Any]:
    body = pod(name, node_name="n1", ready=True, attested=True)
    body["metadata"]["uid"] = f"uid-{name}"
    body["metadata"]["annotations"] = {
        "kubetee.io/attested-policy": "old-policy",
        "kubetee.io/attested-claims": json.dumps(OLD_CLAIMS),
        "kubetee.io/attested-until": "2026-11-26T13:00:00Z",
    }
    return body


@dataclass
class World:
    upkeep: AttestationUpkeep
    core: RecordingCore
    events: RecordingEvents
    pods: list[dict[str, Any]]
    health: list[ServiceHealth]
    requeued: list[tuple[str, str]]

    def indexes(self) -> Indexes:
        # A policy pinning another MRENCLAVE: every replica's recorded claims fail it.
        spec = ec_spec(attestation={"policy": {"mrenclave": ["bb" * 32]}})
        ec = {"metadata": {"namespace": "demo", "name": "demo", "uid": "ec", "generation": 2}}
        deployment = {
            "metadata": {"namespace": "demo", "name": "demo"},
            "spec": {"replicas": 3, "strategy": {"rollingUpdate": {"maxUnavailable": 1}}},
        }
        return Indexes(
            attestation={KEY: [replica_attestation(p) for p in self.pods]},
            enclave_containers={KEY: [resource_view({**ec, "spec": spec})]},
            pods={KEY: [pod_view(p) for p in self.pods]},
            deployments={KEY: [deployment_view(deployment)]},
        )

    async def sweep(self, now: datetime = NOW) -> None:
        await self.upkeep.sweep(self.indexes(), now)


@pytest.fixture
def world() -> World:
    health = [REACHABLE]
    requeued: list[tuple[str, str]] = []
    upkeep = AttestationUpkeep(
        object(), UpkeepSettings(), lambda: (health[0], None), requeued.append
    )
    core, events = RecordingCore(), RecordingEvents()
    upkeep._core = core  # type: ignore[assignment]
    upkeep._writer = events  # type: ignore[assignment]
    return World(upkeep, core, events, [_pod("a"), _pod("b"), _pod("c")], health, requeued)


async def test_one_replica_is_evicted_per_sweep_within_max_unavailable(world: World) -> None:
    await world.sweep()
    assert world.core.evictions == ["a"]
    assert world.core.status_patches == ["a"]  # only the evicted one loses the condition
    assert ("Warning", "MeasurementMismatch") in world.events.events

    # The watch has not caught up yet: "a" still looks serving, yet counts as going.
    await world.sweep(NOW + timedelta(seconds=1))
    assert world.core.evictions == ["a"]

    # "a" is gone, its replacement is not Ready yet: still no room.
    world.pods[0] = pod("a2", node_name="n1")
    await world.sweep(NOW + timedelta(seconds=2))
    assert world.core.evictions == ["a"]


async def test_a_429_leaves_the_replica_serving_and_is_retried(world: World) -> None:
    world.core.evict_status = 429
    await world.sweep()
    await world.sweep(NOW + timedelta(seconds=1))
    assert world.core.evictions == ["a", "a"]  # retried, never deleted
    assert world.core.status_patches == []  # still attested, still serving
    assert world.events.events == [("Normal", "ReplacementDelayed")]  # said once

    world.core.evict_status = None
    await world.sweep(NOW + timedelta(seconds=2))
    assert world.core.evictions == ["a", "a", "a"]
    assert world.core.status_patches == ["a"]


async def test_nothing_is_evicted_while_the_attestation_service_is_unreachable(
    world: World,
) -> None:
    world.health[0] = unreachable("https://kbs:8443", "connection refused", "now")
    for second in range(3):
        await world.sweep(NOW + timedelta(seconds=second))
    assert world.core.evictions == []
    assert world.core.status_patches == []
    assert world.events.events == []


def _refused(name: str) -> dict[str, Any]:
    """A replica its kubelet refused at admission: Failed, no container ever started."""
    body = pod(name, node_name="n2", phase="Failed")
    body["status"]["reason"] = "UnexpectedAdmissionError"
    body["status"]["message"] = (
        "Pod was rejected: Allocate failed due to no healthy devices present; "
        "cannot allocate unhealthy devices kubetee.io/enclave"
    )
    return body


async def test_a_replica_refused_at_admission_is_removed_once_with_a_warning(
    world: World,
) -> None:
    world.health[0] = unreachable("https://kbs:8443", "connection refused", "now")  # no replacing
    world.pods.append(_refused("d"))
    await world.sweep()
    assert world.core.evictions == ["d"]  # a terminal pod's eviction is its deletion
    assert world.events.events == [("Warning", "ReplicaRefusedByNode")]

    # Going: removed once, not again while the watch shows it terminating.
    world.pods[-1]["metadata"]["deletionTimestamp"] = "2026-11-26T12:00:01Z"
    await world.sweep(NOW + timedelta(seconds=1))
    assert world.core.evictions == ["d"]
    assert world.core.status_patches == []  # the serving replicas were left alone


async def test_a_replica_that_failed_after_running_is_not_taken_for_a_refusal(
    world: World,
) -> None:
    world.health[0] = unreachable("https://kbs:8443", "connection refused", "now")
    crashed = pod("e", node_name="n2", phase="Failed")
    crashed["status"]["reason"] = "Evicted"
    crashed["status"]["containerStatuses"] = [
        {"name": "app", "state": {"terminated": {"exitCode": 137}}}
    ]
    world.pods.append(crashed)
    await world.sweep()
    assert world.core.evictions == []
    assert world.events.events == []


def _current(world: World) -> None:
    """Every replica attested under the EnclaveContainer's current policy."""
    view = world.indexes().enclave_containers[KEY][0]
    current = world.upkeep._policy(view)
    assert current is not None
    for body in world.pods:
        body["metadata"]["annotations"]["kubetee.io/attested-policy"] = current[1]


def _renewed(body: dict[str, Any], until: str) -> None:
    body["metadata"]["annotations"]["kubetee.io/attested-until"] = until


async def test_a_replica_that_stops_renewing_is_named_once_before_it_expires(
    world: World,
) -> None:
    _current(world)
    later = UpkeepSettings().reattest_overdue_seconds + 1
    await world.sweep()
    for body in world.pods[1:]:  # b and c renew; a is silent
        _renewed(body, "2026-11-26T13:02:00Z")
    await world.sweep(NOW + timedelta(seconds=120))
    await world.sweep(NOW + timedelta(seconds=later))
    await world.sweep(NOW + timedelta(seconds=later + 5))
    assert world.events.events == [("Warning", "ReattestationOverdue")]  # a, once
    assert world.upkeep.renewals.overdue() == {("demo", "a")}  # the status says so too
    assert world.requeued == [KEY]

    _renewed(world.pods[0], "2026-11-26T13:05:00Z")
    await world.sweep(NOW + timedelta(seconds=later + 10))
    assert world.events.events[1:] == [("Normal", "ReattestationResumed")]
    assert world.upkeep.renewals.overdue() == frozenset()
    assert world.requeued == [KEY, KEY]
    assert world.core.evictions == []
    assert world.core.status_patches == []  # still attested: nothing withdrawn early


async def test_no_overdue_warning_while_the_service_cannot_attest(world: World) -> None:
    """AttestationUnavailable says why already; the runtime gets its time once it answers."""
    _current(world)
    later = UpkeepSettings().reattest_overdue_seconds + 1
    await world.sweep()
    world.health[0] = unreachable("https://kubetee-attestation:8443", "refused", "12:00:00")
    await world.sweep(NOW + timedelta(seconds=later))
    world.health[0] = REACHABLE
    await world.sweep(NOW + timedelta(seconds=later + 5))
    assert world.events.events == []
    await world.sweep(NOW + timedelta(seconds=2 * later + 10))
    assert set(world.events.events) == {("Warning", "ReattestationOverdue")}
    assert len(world.events.events) == 3  # each silent replica, once
