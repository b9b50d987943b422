"""The status tells the truth under change, and reads well in kubectl (issue 15).

Each test provokes one defect found by hand on the local cluster: a quota for a namespace
created after its pool, Warnings repeated or stating superseded figures, pool fields
that checked nothing, overlapping pools double counting, a vanished node, kubectl's
columns and the refusal of quantities.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from kubetee.cluster.nodes import node_manifest
from tests.e2e.conftest import E2ECluster
from tests.e2e.operator_support import (
    Api,
    OperatorProcess,
    api,
    condition,
    enclave_container,
    epc_pool,
    free_nodes,
    operator,
    pools,
    wait_for,
)

pytestmark = pytest.mark.e2e

# Fixtures used by name below.
__all__ = ["api", "free_nodes", "operator", "pools"]


def _events(api: Api, namespace: str, name: str) -> list[Any]:
    found: list[Any] = api.core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}"
    ).items
    return found


def _warnings(api: Api, namespace: str, name: str, reason: str) -> list[str]:
    return [
        e.message
        for e in _events(api, namespace, name)
        for _ in range(e.count or 1)
        if e.type == "Warning" and e.reason == reason
    ]


def _warning_recorded(api: Api, pool: str, reason: str, operator: OperatorProcess) -> None:
    """Wait for the pool's Warning of ``reason``: the operator posts it right after the
    status patch that states the condition, so it may trail the condition a little."""
    wait_for(
        f"a {reason} Warning on the pool",
        lambda: _warnings(api, "default", pool, reason),
        timeout=15,
        operator=operator,
    )


def _pool_condition(api: Api, pool: str, type_: str, reason: str) -> Callable[[], Any]:
    return lambda: (c := condition(api.pool(pool), type_)).get("reason") == reason and c


def test_a_quota_for_a_namespace_created_after_the_pool_is_enforced(
    cluster: E2ECluster, api: Api, operator: OperatorProcess, pools: Callable[..., str]
) -> None:
    late = f"late-{uuid.uuid4().hex[:6]}"
    pool = pools("late-quota")
    manifest = epc_pool(pool)
    manifest["spec"]["quotas"] = [{"namespace": late, "epc": "128Mi"}]
    api.apply(manifest)
    missing = wait_for(
        "QuotasApplied=False/NamespaceNotFound",
        _pool_condition(api, pool, "QuotasApplied", "NamespaceNotFound"),
        operator=operator,
    )
    assert late in missing["message"]
    _warning_recorded(api, pool, "NamespaceNotFound", operator)

    api.core.create_namespace({"metadata": {"name": late}})
    try:
        quota = wait_for(
            "the quota in the namespace created later",
            lambda: (
                api.core.list_namespaced_resource_quota(
                    late, label_selector=f"kubetee.io/pool={pool}"
                ).items
            ),
            timeout=30,
            operator=operator,
        )[0]
        assert quota.spec.hard == {"requests.kubetee.io/epc": "128"}
        wait_for(
            "QuotasApplied=True",
            _pool_condition(api, pool, "QuotasApplied", "QuotasApplied"),
            operator=operator,
        )
    finally:
        api.core.delete_namespace(late)


@pytest.mark.usefixtures("free_nodes")
def test_one_warning_per_cause_and_none_with_a_superseded_figure(
    cluster: E2ECluster,
    api: Api,
    operator: OperatorProcess,
    namespace: str,
    pools: Callable[..., str],
) -> None:
    api.apply(enclave_container("lost-pool", 2, pool="no-such-pool-e2e"), namespace)
    wait_for(
        "PoolNotFound",
        lambda: condition(api.ec(namespace, "lost-pool"), "Ready").get("reason") == "PoolNotFound",
        operator=operator,
    )
    pool = pools("truth-e2e")
    api.apply(enclave_container("full", 3, pool=pool), namespace)
    wait_for(
        "3 scheduled",
        lambda: condition(api.ec(namespace, "full"), "Scheduled").get("status") == "True",
        operator=operator,
    )
    # 7 x 64Mi on 3 x 128Mi: the scale-up makes the free EPC move while the Warning is new.
    cluster.kubectl("scale", "-n", namespace, "ec/full", "--replicas=7")
    settled = wait_for(
        "InsufficientEPC with the pool full",
        lambda: (
            "has 0Mi free" in condition(api.ec(namespace, "full"), "Scheduled").get("message", "")
            and api.ec(namespace, "full")
        ),
        timeout=120,
        operator=operator,
    )
    assert condition(settled, "Ready")["reason"] == "InsufficientEPC"
    time.sleep(2)  # any late duplicate would be posted by now
    warnings = _warnings(api, namespace, "full", "InsufficientEPC")
    assert len(warnings) == 1, warnings  # not again for Ready
    assert "Mi free" not in warnings[0], "an Event must not state a figure that goes stale"
    assert "each needs 64Mi EPC" in warnings[0]
    assert len(_warnings(api, namespace, "lost-pool", "PoolNotFound")) == 1


def test_kubectl_shows_scheduled_counts_and_the_reason(
    cluster: E2ECluster, api: Api, operator: OperatorProcess, namespace: str
) -> None:
    api.apply(enclave_container("nopool", 2, pool="missing-pool-e2e"), namespace)
    wait_for(
        "PoolNotFound",
        lambda: condition(api.ec(namespace, "nopool"), "Ready").get("reason") == "PoolNotFound",
        operator=operator,
    )
    table = cluster.kubectl("get", "ec", "nopool", "-n", namespace).stdout.splitlines()
    header = table[0].split()
    row = dict(zip(header, table[1].split(), strict=False))
    assert row["SCHEDULED"] == "0/2"
    assert row["REASON"] == "PoolNotFound"


def _refusal(cluster: E2ECluster, namespace: str, manifest: dict[str, Any]) -> str:

    result = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", check=False, input_text=yaml.safe_dump(manifest)
    )
    assert result.returncode != 0, f"accepted: {manifest['spec']}"
    return result.stderr


def test_quantities_as_kubernetes_users_write_them_and_each_mistake_once(
    cluster: E2ECluster, api: Api, operator: OperatorProcess, namespace: str
) -> None:
    zero = enclave_container("zero", 1)
    zero["spec"]["epc"] = 0
    stderr = _refusal(cluster, namespace, zero)
    assert stderr.count("spec.epc") == 1, stderr
    assert "0: must be a positive quantity such as 64Mi" in stderr
    assert "must be of type string" not in stderr
    assert "validation rules were not checked" not in stderr

    negative = enclave_container("negative", -1)
    stderr = _refusal(cluster, namespace, negative)
    assert stderr.count("spec.replicas") == 1, stderr

    # An integer quantity counts bytes, as in a resource request: 64Mi.
    exact = enclave_container("bytes", 0)
    exact["spec"]["epc"] = 64 * 1024 * 1024
    api.apply(exact, namespace)
    status = wait_for(
        "the status of an integer epc",
        lambda: api.ec(namespace, "bytes").get("status", {}).get("epc"),
        operator=operator,
    )
    assert status["perReplica"] == "64Mi"

    # A whole number of MiB written with a fraction is one: 0.0625Gi is 64Mi.
    api.apply(enclave_container("fraction", 0, epc="0.0625Gi"), namespace)
    status = wait_for(
        "the status of a fractional epc",
        lambda: api.ec(namespace, "fraction").get("status", {}).get("epc"),
        operator=operator,
    )
    assert status["perReplica"] == "64Mi"


def test_epc_per_node_is_checked_against_what_the_nodes_advertise(
    api: Api, operator: OperatorProcess, pools: Callable[..., str]
) -> None:
    pool = pools("mismatch-e2e")
    manifest = epc_pool(pool)
    manifest["spec"]["epcPerNode"] = "64Mi"  # the nodes advertise 128Mi
    api.apply(manifest)
    found = wait_for(
        "NodesMatchSpec=False/EPCPerNodeMismatch",
        _pool_condition(api, pool, "NodesMatchSpec", "EPCPerNodeMismatch"),
        operator=operator,
    )
    assert "128Mi" in found["message"]
    assert condition(api.pool(pool), "Ready")["status"] == "False"
    manifest["spec"]["epcPerNode"] = "128Mi"
    api.apply(manifest)
    wait_for(
        "Ready once the spec matches",
        lambda: condition(api.pool(pool), "Ready").get("status") == "True",
        operator=operator,
    )


def test_overlapping_pools_count_each_node_once(
    api: Api, operator: OperatorProcess, pools: Callable[..., str]
) -> None:
    older = pools("overlap-a")
    time.sleep(1.1)  # creation timestamps have a one-second resolution
    newer = pools("overlap-b", "Spread")

    sgx_nodes = len(api.core.list_node(label_selector="kubetee.io/sgx=true").items)

    def totals() -> tuple[dict[str, Any], dict[str, Any]] | None:
        a = (api.pool(older).get("status") or {}).get("totals") or {}
        b = (api.pool(newer).get("status") or {}).get("totals") or {}
        both = a.get("nodes") and (b.get("nodes") or b.get("sharedNodes"))
        return (a, b) if both else None

    a, b = wait_for("both pools' totals", totals, operator=operator)
    # Summed over the pools, each node and its EPC count once.
    assert a["nodes"] + b["nodes"] == sgx_nodes
    assert (a["nodes"], b["nodes"], b.get("sharedNodes")) == (sgx_nodes, 0, sgx_nodes)
    assert b["capacity"] == "0Mi"
    assert condition(api.pool(newer), "NodesShared")["status"] == "True"
    nodes = api.pool(newer)["status"]["nodes"]
    assert len(nodes) == sgx_nodes
    assert all(older in n["sharedWith"] for n in nodes)


@pytest.mark.usefixtures("free_nodes")
def test_a_vanished_node_shows_at_once_in_the_enclave_container_and_its_pool(
    cluster: E2ECluster,
    api: Api,
    operator: OperatorProcess,
    namespace: str,
    pools: Callable[..., str],
) -> None:
    pool = pools("vanish-e2e", "Spread")
    api.apply(enclave_container("spread", 3, pool=pool), namespace)
    wait_for(
        "3 scheduled",
        lambda: condition(api.ec(namespace, "spread"), "Scheduled").get("status") == "True",
        operator=operator,
    )
    victim = sorted({p.spec.node_name for p in api.pods(namespace, "spread")})[-1]
    api.core.delete_node(victim)
    try:
        started = time.monotonic()
        ec = wait_for(
            "Scheduled=False/NodeLost",
            lambda: (
                (e := api.ec(namespace, "spread"))
                and condition(e, "Scheduled").get("reason") == "NodeLost"
                and e
            ),
            timeout=15,
            operator=operator,
        )
        assert ec["status"]["scheduled"] == "2/3"
        assert victim in condition(ec, "Scheduled")["message"]
        lost = wait_for(
            "the pool's NodeLost",
            _pool_condition(api, pool, "NodesReady", "NodeLost"),
            timeout=15,
            operator=operator,
        )
        assert victim in lost["message"]
        assert time.monotonic() - started < 15
        _warning_recorded(api, pool, "NodeLost", operator)
    finally:
        try:
            api.core.create_node(node_manifest(victim))
        except ApiException as exc:
            if exc.status != 409:
                raise
        wait_for(
            f"{victim} to advertise EPC again",
            lambda: (
                (api.core.read_node(victim).status.allocatable or {}).get("kubetee.io/epc")
                not in {None, "0"}
            ),
            timeout=60,
        )


def test_each_quantity_mistake_is_named_once_by_the_one_rule_per_field(
    cluster: E2ECluster, namespace: str
) -> None:
    """One CEL rule checks each quantity (cheap on every write); its message still
    names which mistake was made, once, and a mistake in one field never hides
    another's."""
    cases: list[tuple[Any, str]] = [
        ("abc", "abc: must be a positive quantity such as 64Mi"),
        ("-64Mi", "-64Mi: must be a positive quantity such as 64Mi"),
        ("2Ti", "2Ti: must be at most 1Ti"),
        ("1025Gi", "1025Gi: must be at most 1Ti"),
        ("1500Ki", "1500Ki: must be a whole number of MiB"),
        (1000, "1000: must be a whole number of MiB"),  # an integer counts bytes
    ]
    for index, (epc, message) in enumerate(cases):
        manifest = enclave_container(f"quantity-{index}", 1)
        manifest["spec"]["epc"] = epc
        stderr = _refusal(cluster, namespace, manifest)
        assert stderr.count("spec.epc") == 1, stderr
        assert message in stderr, stderr

    both = enclave_container("two-mistakes", 1, epc="abc", enclave={"heapSize": "1500Ki"})
    stderr = _refusal(cluster, namespace, both)
    assert stderr.count("spec.epc") == 1, stderr
    assert "abc: must be a positive quantity such as 64Mi" in stderr
    assert stderr.count("spec.enclave.heapSize") == 1, stderr
    assert "1500Ki: must be a whole number of MiB" in stderr

    pool = epc_pool(f"quota-{uuid.uuid4().hex[:6]}")
    pool["spec"]["quotas"] = [
        {"namespace": namespace, "epc": "2Gi"},
        {"namespace": "b", "epc": "3Ti"},
    ]
    stderr = _refusal(cluster, namespace, pool)
    assert "quotas[0]" not in stderr, stderr
    assert stderr.count("spec.quotas[1].epc") == 1, stderr
    assert "3Ti: must be at most 1Ti" in stderr
