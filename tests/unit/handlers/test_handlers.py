"""The kopf handlers, called directly: views into indexes, events into queue keys."""

from __future__ import annotations

import kopf

from kubetee.controller.names import EC_LABEL
from kubetee.handlers import enclavecontainer, epcpool, replicas
from kubetee.handlers.lifecycle import configure_kopf
from kubetee.reconcile.caches import ObjectKey
from kubetee.reconcile.queue import WorkQueue
from kubetee.reconcile.runtime import OperatorRuntime
from kubetee.settings import OperatorSettings
from tests.unit.controller.builders import ec_spec, node, pod, pool_spec
from tests.unit.reconcile.fakes import Cluster, RecordingWriter


def _memo(cluster: Cluster) -> kopf.Memo:
    settings = OperatorSettings(status_delay=30, pool_delay=30)
    memo = kopf.Memo()
    memo["runtime"] = OperatorRuntime(cluster.caches(), RecordingWriter(), settings)
    return memo


def _runtime(memo: kopf.Memo) -> OperatorRuntime:
    runtime: OperatorRuntime = memo["runtime"]
    return runtime


async def test_indexes_hold_views_keyed_for_lookups() -> None:
    body = kopf.Body(pod("p", node_name="n1", namespace="ns"))
    index = await replicas.replica_index(body, "ns", body.metadata.labels)
    assert list(index) == [("ns", "demo")]
    replica = index[("ns", "demo")]
    assert (replica.pod.name, replica.attestation.name, replica.tcb.name) == ("p", "p", "p")
    assert list(await epcpool.pod_node_index(body)) == ["n1"]
    unbound = kopf.Body(pod("q", namespace="ns"))
    assert await epcpool.pod_node_index(unbound) == {}
    assert list(await epcpool.node_index(kopf.Body(node("n1")), "n1")) == ["n1"]


async def test_pod_event_queues_its_enclave_container_and_the_pools() -> None:
    cluster = Cluster()
    cluster.add_pool("sgx", pool_spec())
    memo = _memo(cluster)
    await epcpool.pod_event(kopf.Body(pod("p", node_name="n1", namespace="ns")), memo)
    runtime = _runtime(memo)
    assert len(runtime.ec_queue) == 1
    assert len(runtime.pool_queue) == 1
    await runtime.stop()


class SpyQueue(WorkQueue[ObjectKey]):
    """Records adds instead of scheduling them."""

    def __init__(self) -> None:
        super().__init__("spy", self._never, delay=0, workers=1)
        self.added: list[tuple[ObjectKey, float | None]] = []

    @staticmethod
    async def _never(key: ObjectKey) -> None:
        raise AssertionError(key)

    def add(self, key: ObjectKey, after: float | None = None) -> None:
        self.added.append((key, after))


async def test_status_only_changes_of_an_enclave_container_are_ignored() -> None:
    memo = _memo(Cluster())
    runtime = _runtime(memo)
    spy = SpyQueue()
    runtime.ec_queue = spy
    body = {
        "metadata": {"name": "demo", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": ec_spec(),
        "status": {"replicas": 1},
    }
    await enclavecontainer.ec_event(kopf.Body(body), "ADDED", "ns", "demo", memo)
    body["status"] = {"replicas": 2}  # our own status write comes back
    await enclavecontainer.ec_event(kopf.Body(body), "MODIFIED", "ns", "demo", memo)
    body["metadata"]["generation"] = 2  # a spec change
    await enclavecontainer.ec_event(kopf.Body(body), "MODIFIED", "ns", "demo", memo)
    await enclavecontainer.ec_event(kopf.Body(body), "DELETED", "ns", "demo", memo)
    assert spy.added == [(("ns", "demo"), 0)] * 3


def test_kopf_keeps_its_marks_under_kubetee_io() -> None:
    settings = kopf.OperatorSettings()
    configure_kopf(settings)
    assert settings.persistence.finalizer == "kubetee.io/finalizer"
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert settings.persistence.progress_storage.prefix == "kubetee.io"


def test_only_owned_deployments_and_budgets_are_watched() -> None:
    settings = kopf.OperatorSettings()
    configure_kopf(settings)

    def selectors(group: str, plural: str) -> list[str]:
        resource = kopf.Resource(group, "v1", plural, namespaced=True)
        return list(settings.watching.label_selectors.collect(resource))

    assert selectors("apps", "deployments") == [EC_LABEL]
    assert selectors("policy", "poddisruptionbudgets") == [EC_LABEL]
    assert selectors("", "pods") == []  # every pod holding EPC counts in the pools


async def test_a_node_losing_its_enclave_slots_requeues_the_replicas_there() -> None:
    """Their status must name the node while its quoting service is down."""
    cluster = Cluster()
    cluster.add_pods([pod("p", node_name="n1", namespace="ns", epc=64)])
    memo = _memo(cluster)
    runtime = _runtime(memo)
    spy = SpyQueue()
    runtime.ec_queue = spy
    healthy = node("n1")
    await epcpool.node_event(kopf.Body(healthy), "MODIFIED", memo)  # first sight: recorded, queued
    spy.added.clear()
    await epcpool.node_event(kopf.Body(healthy), "MODIFIED", memo)  # nothing changed
    assert spy.added == []
    broken = node("n1")
    broken["status"]["allocatable"] = {**broken["status"]["allocatable"], "kubetee.io/enclave": "0"}
    await epcpool.node_event(kopf.Body(broken), "MODIFIED", memo)
    assert spy.added == [(("ns", "demo"), None)]
    await runtime.stop()


async def test_readers_see_their_view_of_the_one_replica_index() -> None:
    """Pods, attestation and TCB views of a replica come from one index entry each."""
    index: dict[ObjectKey, list[replicas.Replica]] = {}
    for name in ("p", "q"):
        body = kopf.Body(pod(name, node_name="n1", namespace="ns", attested=True))
        for key, replica in (
            await replicas.replica_index(body, "ns", body.metadata.labels)
        ).items():
            index.setdefault(key, []).append(replica)
    kwargs = {replicas.INDEX: index}
    pods, attestations, tcb = (
        replicas.pods(kwargs),
        replicas.attestations(kwargs),
        replicas.tcb_replicas(kwargs),
    )
    assert list(pods) == list(attestations) == list(tcb) == [("ns", "demo")]
    assert len(pods) == 1
    assert [p.node for p in pods[("ns", "demo")]] == ["n1", "n1"]
    assert [a.status for a in attestations[("ns", "demo")]] == ["True", "True"]
    assert [t.attested for t in tcb[("ns", "demo")]] == [True, True]
    assert pods.get(("ns", "other"), ()) == ()
    assert ("ns", "other") not in attestations


def test_a_pod_view_is_computed_once_per_event_but_never_reused_for_another() -> None:
    first = kopf.Body(pod("p", node_name="n1", namespace="ns"))
    view = replicas.cached_pod_view(first)
    assert replicas.cached_pod_view(first) is view  # the next handler of the same event
    moved = kopf.Body(pod("p", node_name="n2", namespace="ns"))
    assert replicas.cached_pod_view(moved).node == "n2"  # the next event
    assert replicas.cached_pod_view(first).node == "n1"


class SpyUpkeep:
    """Records the policy events the attestation upkeep is handed, and when."""

    def __init__(self, order: list[str]) -> None:
        self.order = order

    async def policy_event(self, key: ObjectKey, view: object, indexes: object) -> None:
        self.order.append(f"policy {key[1]}")


async def test_an_enclave_container_event_judges_its_policy_before_reconciling() -> None:
    """Replicas a new policy refuses are replaced before anything else (such as a
    rollout) happens; a deletion has no policy to judge."""
    memo = _memo(Cluster())
    runtime = _runtime(memo)
    order: list[str] = []

    class OrderQueue(SpyQueue):
        def add(self, key: ObjectKey, after: float | None = None) -> None:
            order.append(f"queue {key[1]}")

    runtime.ec_queue = OrderQueue()
    memo["attestation_upkeep"] = SpyUpkeep(order)
    body = {"metadata": {"name": "demo", "namespace": "ns", "uid": "u", "generation": 1}}
    body["spec"] = ec_spec()
    indexes = {"ec_index": {}, replicas.INDEX: {}, "deployment_index": {}}
    await enclavecontainer.ec_event(kopf.Body(body), "ADDED", "ns", "demo", memo, **indexes)
    await enclavecontainer.ec_event(kopf.Body(body), "DELETED", "ns", "demo", memo, **indexes)
    assert order == ["policy demo", "queue demo", "queue demo"]
