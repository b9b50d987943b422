"""The watch caches an attestation reads: sync, updates, deletes, expiry, fail closed.

A fake apiserver answers the cache's list and watch calls with the JSON the real one
sends (a list with its resourceVersion, a watch as newline-separated events), so the
cache's own parsing, resourceVersion tracking and restarts are what is tested.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kubetee.attestation.errors import AttestationError
from kubetee.attestation_service.cluster_cache import ClusterCache, _enclave_container, _pod
from kubetee.attestation_service.errors import (
    BackendUnavailableError,
    ResourceNotFoundError,
    WorkloadUnknownError,
)
from kubetee.attestation_service.kubernetes_backend import KubernetesBackend
from kubetee.attestation_service.readiness import first_problem
from kubetee.attestation_service.sessions import PodRef
from kubetee.attestation_service.watch_cache import NotSyncedError, WatchCache

from .conftest import EC_NAME, NAMESPACE, ec_spec

POD = PodRef(NAMESPACE, "payments-1", "uid-1")


def _object(name: str, version: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NAMESPACE, "resourceVersion": str(version)}}


@dataclass
class _Listed:
    data: bytes


class _Stream:
    """A watch response: the events as the apiserver streams them, in odd-sized chunks."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self._body = b"".join(json.dumps(e).encode() + b"\n" for e in events)
        self.closed = False

    def stream(self, amt: Any = None, decode_content: Any = None) -> Any:
        for start in range(0, len(self._body), 7):
            yield self._body[start : start + 7]

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeApiserver:
    """Objects of one kind and the watches that follow; every call is logged."""

    items: list[dict[str, Any]]
    version: int = 10
    # What each successive watch call answers: a list of events, or an exception to raise.
    watches: list[list[dict[str, Any]] | Exception] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    on_last_watch: Callable[[], None] | None = None

    def list(self) -> _Listed:
        self.calls.append("list")
        body = {"metadata": {"resourceVersion": str(self.version)}, "items": self.items}
        return _Listed(json.dumps(body).encode())

    def watch(self, version: str, timeout: int, read_timeout: float) -> _Stream:
        self.calls.append(f"watch from {version}")
        if not self.watches:
            if self.on_last_watch is not None:
                self.on_last_watch()
            return _Stream([])
        answer = self.watches.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return _Stream(answer)


def _cache(apiserver: FakeApiserver) -> WatchCache[dict[str, Any]]:
    return WatchCache("thing", apiserver.list, apiserver.watch, lambda body: body)


def _run_until_watches_done(cache: WatchCache[Any], apiserver: FakeApiserver) -> None:
    apiserver.on_last_watch = cache.stop
    thread = threading.Thread(target=cache.run)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()


def test_nothing_is_served_before_the_first_list() -> None:
    cache = _cache(FakeApiserver([_object("a", 5)]))
    assert not cache.synced
    with pytest.raises(NotSyncedError, match="thing cache is not synced"):
        cache.get(NAMESPACE, "a")


def test_a_list_syncs_and_the_watch_resumes_from_its_version() -> None:
    apiserver = FakeApiserver([_object("a", 5), _object("b", 6)])
    apiserver.watches = [[{"type": "ADDED", "object": _object("c", 11)}]]
    cache = _cache(apiserver)
    _run_until_watches_done(cache, apiserver)
    assert cache.synced
    assert {n for n in "abcd" if cache.get(NAMESPACE, n) is not None} == {"a", "b", "c"}
    # The second watch resumes after the last event seen, not from the list again.
    assert apiserver.calls == ["list", "watch from 10", "watch from 11"]


def test_updates_deletes_and_bookmarks_follow_the_events() -> None:
    apiserver = FakeApiserver([_object("a", 5), _object("b", 6)])
    changed = _object("a", 12)
    changed["spec"] = {"x": 1}
    apiserver.watches = [
        [
            {"type": "MODIFIED", "object": changed},
            {"type": "DELETED", "object": _object("b", 13)},
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "20"}}},
        ]
    ]
    cache = _cache(apiserver)
    _run_until_watches_done(cache, apiserver)
    assert cache.get(NAMESPACE, "a") == changed
    assert cache.get(NAMESPACE, "b") is None
    assert apiserver.calls[-1] == "watch from 20"


@pytest.mark.parametrize(
    "expiry",
    [
        ApiException(status=410, reason="Gone"),  # refused when the watch starts
        [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}],
    ],
    ids=["410-at-start", "410-error-event"],
)
def test_an_expired_watch_lists_again(expiry: Any) -> None:
    apiserver = FakeApiserver([_object("a", 5)])
    apiserver.watches = [expiry]
    # What changed while the watch was away is in the next list.
    original_list = apiserver.list

    def list_after_change() -> _Listed:
        if "list" in apiserver.calls:
            apiserver.items, apiserver.version = [_object("z", 30)], 30
        return original_list()

    apiserver.list = list_after_change  # type: ignore[method-assign]
    cache = _cache(apiserver)
    _run_until_watches_done(cache, apiserver)
    assert apiserver.calls == ["list", "watch from 10", "list", "watch from 30"]
    assert cache.get(NAMESPACE, "a") is None  # deleted while the watch was expired
    assert cache.get(NAMESPACE, "z") is not None
    assert cache.relists == 2


def test_a_lost_watch_refuses_until_listed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    apiserver = FakeApiserver([_object("a", 5)])
    cache = _cache(apiserver)
    seen_while_lost: list[bool] = []

    def failing_watch(version: str, timeout: int, read_timeout: float) -> _Stream:
        if apiserver.calls.count("list") == 1:
            apiserver.calls.append("watch failed")
            raise ConnectionResetError("apiserver went away")
        seen_while_lost.append(cache.synced)
        cache.stop()
        return _Stream([])

    cache._watch = failing_watch
    monkeypatch.setattr("kubetee.attestation_service.watch_cache._RETRY_SECONDS", (0.0, 0.0))
    original_list = apiserver.list

    def watching_list() -> _Listed:
        if apiserver.calls.count("list") == 1:
            seen_while_lost.append(cache.synced)  # asked again: not synced meanwhile
        return original_list()

    cache._list = watching_list
    thread = threading.Thread(target=cache.run)
    thread.start()
    thread.join(timeout=30)
    assert apiserver.calls == ["list", "watch failed", "list"]
    assert seen_while_lost == [False, True]


# -- what an attestation reads, through the backend ------------------------------------


def _ec(version: int, spec: dict[str, Any]) -> dict[str, Any]:
    body = _object(EC_NAME, version)
    body["metadata"]["uid"] = "uid-ec"
    body["spec"] = spec
    return body


def _replica(version: int, **metadata: Any) -> dict[str, Any]:
    body = _object(POD.name, version)
    body["metadata"].update(
        uid=POD.uid, labels={"kubetee.io/enclave-container": EC_NAME}, **metadata
    )
    body["spec"] = {"nodeName": "node-a", "containers": [{"name": "big", "image": "x"}]}
    body["status"] = {"conditions": []}
    return body


def _secret(version: int, value: bytes) -> dict[str, Any]:
    body = _object("db", version)
    body["data"] = {"pw": base64.b64encode(value).decode()}
    return body


@dataclass
class Cluster:
    pods: WatchCache[dict[str, Any]]
    ecs: WatchCache[Any]
    secrets: WatchCache[dict[str, str]]
    backend: KubernetesBackend


@pytest.fixture
def cluster() -> Cluster:
    spec = ec_spec().model_dump(mode="json", by_alias=True, exclude_none=True)
    pods = WatchCache("pod", FakeApiserver([_replica(3)]).list, _no_watch, _pod)
    ecs = WatchCache("EnclaveContainer", FakeApiserver([_ec(4, spec)]).list, _no_watch,
                     _enclave_container)  # fmt: skip
    secrets = WatchCache(
        "Secret", FakeApiserver([_secret(5, b"hunter2")]).list, _no_watch, _secret_data
    )
    backend = KubernetesBackend(object(), ClusterCache.of(pods, ecs, secrets), instance="kbs-0")
    return Cluster(pods, ecs, secrets, backend)


def _no_watch(*_: Any) -> _Stream:
    raise AssertionError("these tests apply events themselves")


def _secret_data(body: dict[str, Any]) -> dict[str, str]:
    from kubetee.attestation_service.cluster_cache import _secret_data as convert  # noqa: PLC0415

    return convert(body)


async def test_the_backend_refuses_until_every_cache_has_synced(cluster: Cluster) -> None:
    cluster.pods.relist()
    with pytest.raises(BackendUnavailableError, match="EnclaveContainer cache is not synced"):
        await cluster.backend.workload_of(POD)
    problem = await ClusterCache.of(cluster.pods, cluster.ecs, cluster.secrets).problem()
    assert problem is not None
    assert "EnclaveContainer, Secret" in problem
    cluster.ecs.relist()
    cluster.secrets.relist()
    assert await ClusterCache.of(cluster.pods, cluster.ecs, cluster.secrets).problem() is None
    workload = await cluster.backend.workload_of(POD)
    assert workload.node_name == "node-a"


async def _synced(cluster: Cluster) -> None:
    for cache in (cluster.pods, cluster.ecs, cluster.secrets):
        cache.relist()


async def test_a_deleted_pod_is_unknown_once_the_watch_says_so(cluster: Cluster) -> None:
    await _synced(cluster)
    await cluster.backend.workload_of(POD)
    cluster.pods.apply({"type": "DELETED", "object": _replica(7)})
    with pytest.raises(WorkloadUnknownError, match="there is no replica pod"):
        await cluster.backend.workload_of(POD)


async def test_a_pod_being_deleted_or_replaced_is_refused(cluster: Cluster) -> None:
    await _synced(cluster)
    cluster.pods.apply(
        {"type": "MODIFIED", "object": _replica(7, deletionTimestamp="2026-12-01T00:00:00Z")}
    )
    with pytest.raises(WorkloadUnknownError, match="being deleted"):
        await cluster.backend.workload_of(POD)
    replaced = _replica(8)
    replaced["metadata"]["uid"] = "uid-2"
    cluster.pods.apply({"type": "MODIFIED", "object": replaced})
    with pytest.raises(WorkloadUnknownError, match="another UID"):
        await cluster.backend.workload_of(POD)


async def test_a_changed_policy_takes_effect_with_the_watch_event(cluster: Cluster) -> None:
    await _synced(cluster)
    before = (await cluster.backend.workload_of(POD)).enclave_container
    spec = ec_spec().model_dump(mode="json", by_alias=True, exclude_none=True)
    spec["attestation"]["policy"]["mrenclave"] = ["ab" * 32]
    cluster.ecs.apply({"type": "MODIFIED", "object": _ec(9, spec)})
    after = (await cluster.backend.workload_of(POD)).enclave_container
    assert after.policy.mrenclave == ["ab" * 32]
    assert after.policy_hash != before.policy_hash
    spec["attestation"]["policy"]["mrenclave"] = ["not hex"]
    cluster.ecs.apply({"type": "MODIFIED", "object": _ec(10, spec)})
    with pytest.raises(WorkloadUnknownError, match="has an invalid spec"):
        await cluster.backend.workload_of(POD)
    cluster.ecs.apply({"type": "DELETED", "object": _ec(11, spec)})
    with pytest.raises(WorkloadUnknownError, match="there is no EnclaveContainer"):
        await cluster.backend.workload_of(POD)


async def test_a_changed_or_deleted_secret_takes_effect_with_the_watch_event(
    cluster: Cluster,
) -> None:
    await _synced(cluster)
    named = (await cluster.backend.workload_of(POD)).enclave_container.secrets["db"]
    ref = named.model_copy(update={"key": "pw"})
    assert await cluster.backend.secret_value(NAMESPACE, ref) == b"hunter2"
    cluster.secrets.apply({"type": "MODIFIED", "object": _secret(12, b"rotated")})
    assert await cluster.backend.secret_value(NAMESPACE, ref) == b"rotated"
    cluster.secrets.apply({"type": "DELETED", "object": _secret(13, b"")})
    with pytest.raises(ResourceNotFoundError, match="does not exist") as refused:
        await cluster.backend.secret_value(NAMESPACE, ref)
    assert "rotated" not in str(refused.value)
    assert isinstance(refused.value, AttestationError)


def test_a_cached_pod_keeps_only_what_an_attestation_reads() -> None:
    kept = _pod(_replica(3))
    assert kept["spec"] == {"nodeName": "node-a"}
    assert kept["metadata"]["uid"] == POD.uid


async def test_readiness_waits_for_the_caches_before_asking_the_api(cluster: Cluster) -> None:
    asked: list[str] = []

    async def api_problem() -> str | None:
        asked.append("api")
        return None

    caches = ClusterCache.of(cluster.pods, cluster.ecs, cluster.secrets)
    ready = first_problem(caches.problem, api_problem)
    problem = await ready()
    assert problem is not None
    assert "not synced" in problem
    assert asked == []
    await _synced(cluster)
    assert await ready() is None
    assert asked == ["api"]


async def test_the_tcb_grace_reads_the_operators_condition_not_only_the_annotation(
    cluster: Cluster,
) -> None:
    await _synced(cluster)
    deadline = {"kubetee.io/tcb-recovery-deadline": "2026-12-01T00:10:00Z"}
    # The annotation alone (anyone who may patch the pod can write it): no grace start.
    cluster.pods.apply({"type": "MODIFIED", "object": _replica(7, annotations=deadline)})
    workload = await cluster.backend.workload_of(POD)
    assert workload.tcb_recovery_deadline is not None
    assert workload.tcb_recovery_since is None
    # With the operator's TcbRecoveryPending condition (pods/status): since it turned True.
    pending = _replica(8, annotations=deadline)
    pending["status"]["conditions"] = [
        {"type": "TcbRecoveryPending", "status": "True",
         "lastTransitionTime": "2026-12-01T00:00:00Z"},
    ]  # fmt: skip
    cluster.pods.apply({"type": "MODIFIED", "object": pending})
    workload = await cluster.backend.workload_of(POD)
    assert workload.tcb_recovery_since == datetime(2026, 12, 1, tzinfo=UTC)
