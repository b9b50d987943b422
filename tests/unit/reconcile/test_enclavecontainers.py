"""Reconciling an EnclaveContainer: apply once, status always true, events on transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kubetee.controller.sidecar import RuntimeSettings
from kubetee.controller.views import deployment_view, disruption_budget_view
from kubetee.reconcile.enclavecontainers import Defaults, EnclaveContainerReconciler
from tests.unit.controller.builders import INSUFFICIENT_EPC, ec_spec, node, pod, pool_spec
from tests.unit.reconcile.fakes import Cluster, RecordingWriter

KEY = ("ns", "demo")


def _reconciler(
    cluster: Cluster,
    writer: RecordingWriter,
    requeued: list[tuple[str, str]] | None = None,
) -> EnclaveContainerReconciler:
    return EnclaveContainerReconciler(
        cluster.caches(),
        writer,
        Defaults(RuntimeSettings("img"), "kubetee-binpack"),
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
    assert writer.reasons()[-1] == "DeploymentScaled"  # only the replica count changed


async def test_a_pure_scale_is_a_scale_event_not_a_rollout() -> None:
    cluster, writer = _cluster(), RecordingWriter()
    reconciler = _reconciler(cluster, writer)
    await reconciler.reconcile(KEY)
    assert writer.events == []  # a creation: the Deployment's own Events say so
    cluster.deployments[KEY] = [deployment_view(writer.deployments[0])]
    cluster.add_ec("demo", ec_spec(replicas=5), generation=2)
    await reconciler.reconcile(KEY)
    assert writer.events[-1][2:] == ("DeploymentScaled", "Scaled Deployment demo to 5 replicas")


async def test_an_integer_epc_counts_bytes_like_a_resource_quantity() -> None:
    cluster, writer = _cluster(), RecordingWriter()
    cluster.add_ec("demo", ec_spec(epc=64 * 1024 * 1024))
    await _reconciler(cluster, writer).reconcile(KEY)
    (deployment,) = writer.deployments
    sidecar = deployment["spec"]["template"]["spec"]["initContainers"][0]
    assert sidecar["resources"]["limits"]["kubetee.io/epc"] == "64"


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


async def test_pending_for_epc_names_the_free_epc_of_now_and_the_event_no_figure() -> None:
    """The condition's figure comes from the nodes and pods as they are at this reconcile;
    the Warning names the cause in words that stay true while the figure moves."""
    cluster, writer = _cluster(), RecordingWriter()
    cluster.add_pods(
        [
            pod("p0", node_name="n1", namespace="ns"),
            pod("p1", unschedulable=INSUFFICIENT_EPC, namespace="ns"),
        ]
    )
    reconciler = _reconciler(cluster, writer)
    await reconciler.reconcile(KEY)
    cluster.deployments[KEY] = [deployment_view(writer.deployments[0])]
    await reconciler.reconcile(KEY)
    scheduled = next(c for c in writer.statuses[-1][3]["conditions"] if c["type"] == "Scheduled")
    assert scheduled["reason"] == "InsufficientEPC"
    assert "pool sgx has 320Mi free (at most 128Mi on one node" in scheduled["message"]

    # A replica binds: the condition follows, no second Warning, and the first one states
    # no figure the status now contradicts.
    cluster.add_pods([pod("p2", node_name="n2", namespace="ns", epc=128)])
    await reconciler.reconcile(KEY)
    scheduled = next(c for c in writer.statuses[-1][3]["conditions"] if c["type"] == "Scheduled")
    assert "pool sgx has 192Mi free" in scheduled["message"]
    warnings = [e for e in writer.events if e[1] == "Warning"]
    assert [e[2] for e in warnings] == ["InsufficientEPC"]
    assert "free" in warnings[0][3]
    assert "Mi free" not in warnings[0][3]
    assert "each needs 64Mi EPC" in warnings[0][3]


async def test_one_warning_per_cause_even_when_three_conditions_share_it() -> None:
    cluster, writer = _cluster(), RecordingWriter()
    cluster.pools.clear()
    reconciler = _reconciler(cluster, writer)
    await reconciler.reconcile(KEY)
    cluster.add_ec("demo", ec_spec(replicas=4), generation=2)  # the message changes
    await reconciler.reconcile(KEY)
    assert writer.reasons() == ["PoolNotFound"]


async def test_replicas_on_a_node_that_is_not_ready_say_so() -> None:
    cluster, writer = _cluster(), RecordingWriter()
    cluster.add_pods(
        [pod(f"p{i}", node_name=f"n{i + 1}", namespace="ns", ready=True, attested=True)
         for i in range(2)]
        + [pod("p2", node_name="n3", namespace="ns", attested=True)]
    )  # fmt: skip
    cluster.add_nodes([node("n3", ready=False)])
    reconciler = _reconciler(cluster, writer)
    await reconciler.reconcile(KEY)
    cluster.deployments[KEY] = [deployment_view(writer.deployments[0])]
    await reconciler.reconcile(KEY)
    assert _conditions(writer)["Ready"] == ("False", "NodeNotReady")
    ready = next(c for c in writer.statuses[-1][3]["conditions"] if c["type"] == "Ready")
    assert ready["message"] == "2 of 3 replicas ready: nodes not ready: n3"
    assert writer.reasons() == ["NodeNotReady"]


async def test_a_deleted_node_unschedules_its_replicas_at_once() -> None:
    cluster, writer = _cluster(), RecordingWriter()
    cluster.add_pods([pod(f"p{i}", node_name=f"n{i + 1}", namespace="ns") for i in range(3)])
    reconciler = _reconciler(cluster, writer)
    await reconciler.reconcile(KEY)
    cluster.deployments[KEY] = [deployment_view(writer.deployments[0])]
    await reconciler.reconcile(KEY)
    assert writer.statuses[-1][3]["scheduled"] == "3/3"
    del cluster.nodes["n3"]  # its pods stay bound until the pod garbage collector runs
    await reconciler.reconcile(KEY)
    status = writer.statuses[-1][3]
    assert (status["scheduled"], status["scheduledReplicas"]) == ("2/3", 2)
    scheduled = next(c for c in status["conditions"] if c["type"] == "Scheduled")
    assert (scheduled["status"], scheduled["reason"]) == ("False", "NodeLost")
    assert "n3" in scheduled["message"]
    assert writer.reasons().count("NodeLost") == 1


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
    assert held[-1] == (KEY, 0.5)  # the remaining time, counted from when the pods exist
    clock.now += timedelta(seconds=0.5)
    await reconciler.reconcile(KEY)
    assert _conditions(writer)["Scheduled"] == ("Unknown", "Scheduling")


async def test_settle_time_starts_when_the_controllers_created_every_replica_pod() -> None:
    cluster, writer, clock, held = _cluster(), RecordingWriter(), _Clock(), []
    reconciler = _holding_reconciler(cluster, writer, clock, held)
    await reconciler.reconcile(KEY)
    cluster.deployments[KEY] = [deployment_view(writer.deployments[0])]
    await reconciler.reconcile(KEY)  # no pod yet: a busy ReplicaSet controller
    assert (writer.statuses, held) == ([], [(KEY, 10.0)])
    clock.now += timedelta(seconds=3)
    cluster.add_pods([pod(f"p{i}", namespace="ns", phase="Pending") for i in range(2)])
    await reconciler.reconcile(KEY)  # two of three: still waiting for the controllers
    assert (writer.statuses, held[-1]) == ([], (KEY, 7.0))
    clock.now += timedelta(seconds=1)
    cluster.add_pods([pod("p2", namespace="ns", phase="Pending")])
    await reconciler.reconcile(KEY)
    assert (writer.statuses, held[-1]) == ([], (KEY, 2.0))  # the scheduler's turn now
    clock.now += timedelta(seconds=1)
    await reconciler.reconcile(KEY)
    assert (writer.statuses, held[-1]) == ([], (KEY, 1.0))
    clock.now += timedelta(seconds=1)
    await reconciler.reconcile(KEY)
    assert _conditions(writer)["Scheduled"] == ("Unknown", "Scheduling")


async def test_status_is_held_no_longer_than_the_limit_when_pods_never_come() -> None:
    cluster, writer, clock, held = _cluster(), RecordingWriter(), _Clock(), []
    reconciler = _holding_reconciler(cluster, writer, clock, held)
    await reconciler.reconcile(KEY)
    cluster.deployments[KEY] = [deployment_view(writer.deployments[0])]
    await reconciler.reconcile(KEY)
    clock.now += timedelta(seconds=9)
    cluster.add_pods([pod(f"p{i}", namespace="ns", phase="Pending") for i in range(3)])
    await reconciler.reconcile(KEY)
    assert (writer.statuses, held[-1]) == ([], (KEY, 1.0))  # the limit comes first
    clock.now += timedelta(seconds=1)
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


async def test_a_pool_selector_change_moves_the_deployment_of_an_unchanged_spec() -> None:
    """The manifest kept between runs is rebuilt when the pool it was built for changes."""
    cluster, writer = _cluster(), RecordingWriter()
    reconciler = _reconciler(cluster, writer)
    await reconciler.reconcile(KEY)
    cluster.deployments[KEY] = [deployment_view(writer.deployments[0])]
    await reconciler.reconcile(KEY)
    assert len(writer.deployments) == 1  # unchanged: built once, not applied again
    cluster.add_pool("sgx", pool_spec(nodeSelector={"zone": "b"}), generation=2)
    await reconciler.reconcile(KEY)
    assert len(writer.deployments) == 2
    affinity = writer.deployments[1]["spec"]["template"]["spec"]["affinity"]
    terms = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    keys = {e["key"] for t in terms["nodeSelectorTerms"] for e in t["matchExpressions"]}
    assert "zone" in keys
    assert "kubetee.io/sgx" not in keys
