"""Reconciling an EnclaveContainer: apply once, status always true, events on transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kubetee.controller.accounting import FreeEPC
from kubetee.controller.sidecar import RuntimeSettings
from kubetee.controller.views import deployment_view, disruption_budget_view
from kubetee.reconcile.enclavecontainers import Defaults, EnclaveContainerReconciler
from tests.unit.controller.builders import INSUFFICIENT_EPC, ec_spec, node, pod, pool_spec
from tests.unit.reconcile.fakes import Cluster, RecordingWriter

KEY = ("ns", "demo")


def _reconciler(
    cluster: Cluster,
    writer: RecordingWriter,
    free: FreeEPC | None = None,
    requeued: list[tuple[str, str]] | None = None,
) -> EnclaveContainerReconciler:
    return EnclaveContainerReconciler(
        cluster.caches(),
        writer,
        Defaults(RuntimeSettings("img"), "kubetee-binpack"),
        pool_free=lambda pool: free,
        requeue=(requeued if requeued is not None else []).append,
        clock=lambda: datetime(2026, 1, 1, tzinfo=UTC),
    )


def _cluster() -> Cluster:
    cluster = Cluster()
    cluster.add_pool("sgx", pool_spec())
    cluster.add_nodes([node("n1"), node("n2"), node("n3")])
    cluster.add_ec("demo", ec_spec())
    return cluster


def _conditions(writer: RecordingWriter) -> dict[str, tuple[str, str]]:
    status = writer.statuses[-1][3]
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


async def test_applies_the_deployment_once_then_writes_status() -> None:
    cluster, writer, requeued = _cluster(), RecordingWriter(), []
    reconciler = _reconciler(cluster, writer, requeued=requeued)
    await reconciler.reconcile(KEY)
    assert len(writer.deployments) == 1
    assert writer.deployments[0]["metadata"]["ownerReferences"][0]["uid"] == "uid-demo"
    # No pods yet: the status waits for them (or for the requeue).
    assert (writer.statuses, requeued) == ([], [KEY])
    # The watch delivers the Deployment: nothing to apply, the status is written once.
    cluster.deployments[KEY] = [deployment_view(writer.deployments[0])]
    await reconciler.reconcile(KEY)
    await reconciler.reconcile(KEY)
    assert len(writer.deployments) == 1
    assert len(writer.statuses) == 1
    assert _conditions(writer)["Scheduled"] == ("Unknown", "Scheduling")
    assert writer.events == []


async def test_scaled_deployment_is_set_back_to_the_spec() -> None:
    cluster, writer = _cluster(), RecordingWriter()
    reconciler = _reconciler(cluster, writer)
    await reconciler.reconcile(KEY)
    scaled = dict(writer.deployments[0], spec={**writer.deployments[0]["spec"], "replicas": 9})
    cluster.deployments[KEY] = [deployment_view(scaled)]
    await reconciler.reconcile(KEY)
    assert [d["spec"]["replicas"] for d in writer.deployments] == [3, 3]


async def test_quick_second_event_does_not_apply_again_before_the_watch_catches_up() -> None:
    cluster, writer = _cluster(), RecordingWriter()
    reconciler = _reconciler(cluster, writer)
    await reconciler.reconcile(KEY)
    cluster.deployments[KEY] = [deployment_view(writer.deployments[0])]
    cluster.add_ec("demo", ec_spec(replicas=5), generation=2)
    await reconciler.reconcile(KEY)
    await reconciler.reconcile(KEY)  # the watch still shows the old Deployment
    assert [d["spec"]["replicas"] for d in writer.deployments] == [3, 5]
    assert writer.reasons()[-1] == "DeploymentUpdated"


async def test_deleted_deployment_is_created_again() -> None:
    cluster, writer = _cluster(), RecordingWriter()
    reconciler = _reconciler(cluster, writer)
    await reconciler.reconcile(KEY)
    reconciler.deployment_deleted(KEY)
    await reconciler.reconcile(KEY)
    assert len(writer.deployments) == 2


async def test_missing_pool_is_a_condition_not_a_crash() -> None:
    cluster, writer = _cluster(), RecordingWriter()
    cluster.pools.clear()
    await _reconciler(cluster, writer).reconcile(KEY)
    assert writer.deployments == []
    assert _conditions(writer)["Scheduled"] == ("False", "PoolNotFound")
    assert ("demo", "Warning", "PoolNotFound") in [e[:3] for e in writer.events]


async def test_invalid_spec_is_a_condition_naming_the_field() -> None:
    cluster, writer = _cluster(), RecordingWriter()
    cluster.add_ec("demo", ec_spec(epc="0"))
    await _reconciler(cluster, writer).reconcile(KEY)
    assert writer.deployments == []
    status = writer.statuses[-1][3]
    scheduled = next(c for c in status["conditions"] if c["type"] == "Scheduled")
    assert scheduled["reason"] == "InvalidSpec"
    assert "epc" in scheduled["message"]
    assert "more than zero" in scheduled["message"]


async def test_refused_template_is_invalid_spec_and_not_retried() -> None:
    cluster = _cluster()
    writer = RecordingWriter(refuse_deployments="spec.template.spec.containers[0].image: Required")
    reconciler = _reconciler(cluster, writer)
    await reconciler.reconcile(KEY)
    await reconciler.reconcile(KEY)
    assert _conditions(writer)["Ready"] == ("False", "InvalidSpec")
    assert "containers[0].image" in writer.statuses[-1][3]["conditions"][0]["message"]
    assert len(writer.statuses) == 1


async def test_foreign_deployment_is_not_taken_over() -> None:
    cluster, writer = _cluster(), RecordingWriter()
    foreign = {"metadata": {"name": "demo", "namespace": "ns", "ownerReferences": []}}
    cluster.deployments[KEY] = [deployment_view(foreign)]
    await _reconciler(cluster, writer).reconcile(KEY)
    assert writer.deployments == []
    assert _conditions(writer)["Scheduled"] == ("False", "DeploymentConflict")


async def test_pending_for_epc_uses_the_pool_free_figure() -> None:
    cluster, writer = _cluster(), RecordingWriter()
    cluster.add_pods(
        [
            pod("p0", node_name="n1", namespace="ns"),
            pod("p1", unschedulable=INSUFFICIENT_EPC, namespace="ns"),
        ]
    )
    reconciler = _reconciler(cluster, writer, free=FreeEPC(10, 10, 3, 3))
    await reconciler.reconcile(KEY)
    cluster.deployments[KEY] = [deployment_view(writer.deployments[0])]
    await reconciler.reconcile(KEY)
    status = writer.statuses[-1][3]
    scheduled = next(c for c in status["conditions"] if c["type"] == "Scheduled")
    assert scheduled["reason"] == "InsufficientEPC"
    assert "pool sgx has 10Mi free" in scheduled["message"]
    assert ("demo", "Warning", "InsufficientEPC") in [e[:3] for e in writer.events]


async def test_deleted_enclave_container_writes_nothing() -> None:
    cluster, writer = _cluster(), RecordingWriter()
    cluster.enclave_containers.clear()
    await _reconciler(cluster, writer).reconcile(KEY)
    assert (writer.deployments, writer.statuses, writer.events) == ([], [], [])


async def test_spec_disruption_keeps_an_owned_budget_and_removing_it_deletes_it() -> None:
    cluster, writer = _cluster(), RecordingWriter()
    cluster.add_ec("demo", ec_spec(disruption={"maxUnavailable": 1}))
    reconciler = _reconciler(cluster, writer)
    await reconciler.reconcile(KEY)
    (budget,) = writer.budgets
    assert budget["kind"] == "PodDisruptionBudget"
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"] == {"matchLabels": {"kubetee.io/enclave-container": "demo"}}
    assert budget["metadata"]["ownerReferences"][0]["uid"] == "uid-demo"

    # Seen by the watch: not applied again.
    cluster.disruption_budgets[KEY] = [disruption_budget_view(budget)]
    cluster.deployments[KEY] = [deployment_view(writer.deployments[0])]
    await reconciler.reconcile(KEY)
    assert len(writer.budgets) == 1

    cluster.add_ec("demo", ec_spec(), generation=2)
    await reconciler.reconcile(KEY)
    assert writer.deleted_budgets == [("ns", "demo")]


async def test_a_budget_of_someone_else_is_left_alone() -> None:
    cluster, writer = _cluster(), RecordingWriter()
    foreign = {"metadata": {"namespace": "ns", "name": "demo", "annotations": {}}}
    cluster.disruption_budgets[KEY] = [disruption_budget_view(foreign)]
    for spec in (ec_spec(disruption={"maxUnavailable": 2}), ec_spec()):
        cluster.add_ec("demo", spec)
        await _reconciler(cluster, writer).reconcile(KEY)
    assert (writer.budgets, writer.deleted_budgets) == ([], [])


class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _holding_reconciler(
    cluster: Cluster,
    writer: RecordingWriter,
    clock: _Clock,
    held: list[tuple[tuple[str, str], float]],
) -> EnclaveContainerReconciler:
    return EnclaveContainerReconciler(
        cluster.caches(),
        writer,
        Defaults(RuntimeSettings("img"), "kubetee-binpack"),
        pool_free=lambda pool: None,
        requeue=lambda key: None,
        requeue_after=lambda key, seconds: held.append((key, seconds)),
        clock=clock,
        settle=timedelta(seconds=2),
    )


async def test_new_enclave_container_gets_one_status_write_once_its_replicas_are_bound() -> None:
    cluster, writer, clock, held = _cluster(), RecordingWriter(), _Clock(), []
    reconciler = _holding_reconciler(cluster, writer, clock, held)
    await reconciler.reconcile(KEY)
    cluster.deployments[KEY] = [deployment_view(writer.deployments[0])]
    cluster.add_pods([pod(f"p{i}", namespace="ns", phase="Pending") for i in range(3)])
    await reconciler.reconcile(KEY)
    # Created, not yet bound: "0 of 3 scheduled" is held back and looked at again later.
    assert writer.statuses == []
    assert held == [(KEY, 2.0)]
    clock.now += timedelta(seconds=0.5)
    cluster.replicas[KEY] = []
    cluster.add_pods([pod(f"p{i}", namespace="ns", node_name="n1") for i in range(3)])
    await reconciler.reconcile(KEY)
    assert len(writer.statuses) == 1
    assert _conditions(writer)["Scheduled"] == ("True", "ReplicasScheduled")


async def test_status_held_for_the_scheduler_is_written_once_the_settle_time_passed() -> None:
    cluster, writer, clock, held = _cluster(), RecordingWriter(), _Clock(), []
    reconciler = _holding_reconciler(cluster, writer, clock, held)
    await reconciler.reconcile(KEY)
    cluster.deployments[KEY] = [deployment_view(writer.deployments[0])]
    cluster.add_pods([pod(f"p{i}", namespace="ns", phase="Pending") for i in range(3)])
    await reconciler.reconcile(KEY)
    clock.now += timedelta(seconds=1.5)
    await reconciler.reconcile(KEY)
    assert writer.statuses == []
    assert held[-1] == (KEY, 0.5)  # the remaining time, counted from the first hold
    clock.now += timedelta(seconds=0.5)
    await reconciler.reconcile(KEY)
    assert _conditions(writer)["Scheduled"] == ("Unknown", "Scheduling")


async def test_scheduler_verdict_is_never_held() -> None:
    cluster, writer, clock, held = _cluster(), RecordingWriter(), _Clock(), []
    reconciler = _holding_reconciler(cluster, writer, clock, held)
    await reconciler.reconcile(KEY)
    cluster.deployments[KEY] = [deployment_view(writer.deployments[0])]
    cluster.add_pods(
        [
            pod(f"p{i}", namespace="ns", phase="Pending", unschedulable=INSUFFICIENT_EPC)
            for i in range(3)
        ]
    )
    await reconciler.reconcile(KEY)
    assert held == []
    assert _conditions(writer)["Scheduled"] == ("False", "InsufficientEPC")
