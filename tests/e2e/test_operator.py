"""The operator on the real local cluster: the acceptance list of EnclaveContainers.

Real kube-apiserver, scheduler and controller-manager, KWOK nodes advertising EPC
through the device plugin; the operator runs as ``kubetee operator`` in a subprocess.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from kubetee.cluster.node_services import plugin_dir
from kubetee.cluster.nodes import node_manifest
from tests.e2e.conftest import REPO_ROOT, E2ECluster
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

EXAMPLES = REPO_ROOT / "deploy" / "examples"


def _scheduled(
    api: Api, namespace: str, name: str, status: str, reason: str
) -> Callable[[], dict[str, Any] | None]:
    def probe() -> dict[str, Any] | None:
        ec = api.ec(namespace, name)
        found = condition(ec, "Scheduled")
        if found.get("status") == status and found.get("reason") == reason:
            return ec
        return None

    return probe


def _wait_scheduled(
    api: Api, namespace: str, name: str, operator: OperatorProcess, what: str
) -> dict[str, Any]:
    """Wait for Scheduled=True/ReplicasScheduled and return the EnclaveContainer."""
    return wait_for(
        what, _scheduled(api, namespace, name, "True", "ReplicasScheduled"), operator=operator
    )


def _pool_allocated(api: Api, pool: str, allocated: str) -> Callable[[], dict[str, Any] | None]:
    def probe() -> dict[str, Any] | None:
        found = api.pool(pool)
        totals = (found.get("status") or {}).get("totals") or {}
        return found if totals.get("allocated") == allocated else None

    return probe


@pytest.mark.usefixtures("free_nodes")
def test_sample_schedules_scales_reports_and_frees_epc(
    cluster: E2ECluster, api: Api, operator: OperatorProcess, namespace: str
) -> None:
    cluster.kubectl("apply", "-f", str(EXAMPLES / "epcpool.yaml"))
    try:
        cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "enclavecontainer.yaml"))
        ec = _wait_scheduled(api, namespace, "demo", operator, "3 replicas scheduled")
        status = ec["status"]
        assert status["replicas"] == 3
        assert status["epc"] == {"perReplica": "64Mi", "requested": "192Mi", "allocated": "192Mi"}
        assert status["selector"] == "kubetee.io/enclave-container=demo"
        assert all(p.spec.node_name for p in api.pods(namespace, "demo"))
        wait_for(
            "pool accounting of 192Mi", _pool_allocated(api, "sgx", "192Mi"), operator=operator
        )

        table = cluster.kubectl("get", "ec", "demo", "-n", namespace).stdout.splitlines()
        assert table[0].split()[:6] == ["NAME", "REPLICAS", "READY", "ATTESTED", "EPC", "POOL"]
        row = table[1].split()
        assert (row[0], row[1], row[4], row[5]) == ("demo", "3", "64Mi", "sgx")
        assert row[2] == str(api.ec(namespace, "demo")["status"].get("readyReplicas", ""))

        # 7 x 64Mi on 3 x 128Mi: six fit, the seventh waits for EPC.
        cluster.kubectl("scale", "-n", namespace, "ec/demo", "--replicas=7")
        probe = _scheduled(api, namespace, "demo", "False", "InsufficientEPC")
        # The message follows the pool's accounting as the six replicas that fit get bound.
        ec = wait_for(
            "Scheduled=False/InsufficientEPC with the pool full",
            lambda: (found := probe()) and "0Mi free" in condition(found, "Scheduled")["message"]
            and found,
            operator=operator,
        )  # fmt: skip
        message = condition(ec, "Scheduled")["message"]
        assert "1 of 7 replicas cannot be scheduled" in message
        assert "pool sgx has 0Mi free" in message
        bound = [p for p in api.pods(namespace, "demo") if p.spec.node_name]
        pending = [p for p in api.pods(namespace, "demo") if not p.spec.node_name]
        assert (len(bound), len(pending)) == (6, 1)
        wait_for("pool full", _pool_allocated(api, "sgx", "384Mi"), operator=operator)
        events = cluster.kubectl(
            "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=demo"
        ).stdout
        assert "InsufficientEPC" in events

        # The scale subresource: kubectl scale reads status.selector and writes spec.replicas.
        cluster.kubectl("scale", "-n", namespace, "ec/demo", "--replicas=2")
        wait_for(
            "2 replicas",
            lambda: (
                api.ec(namespace, "demo")["status"].get("replicas") == 2
                and condition(api.ec(namespace, "demo"), "Scheduled").get("status") == "True"
                and len(api.pods(namespace, "demo")) == 2
            ),
            operator=operator,
        )
        wait_for(
            "pool accounting of 128Mi", _pool_allocated(api, "sgx", "128Mi"), operator=operator
        )

        # Deleting the EnclaveContainer frees all its EPC (owner references).
        cluster.kubectl("delete", "-n", namespace, "ec/demo", "--wait=false")
        wait_for("all EPC freed", _pool_allocated(api, "sgx", "0Mi"), operator=operator)
        wait_for("pods gone", lambda: not api.pods(namespace, "demo"))
        assert api.apps.list_namespaced_deployment(namespace).items == []
    finally:
        api.delete_pool("sgx")


@pytest.mark.usefixtures("free_nodes")
def test_deleting_a_node_moves_its_replicas_and_the_accounting_follows(
    cluster: E2ECluster,
    api: Api,
    operator: OperatorProcess,
    namespace: str,
    pools: Callable[..., str],
) -> None:
    pool = pools("spread-move", "Spread")
    api.apply(enclave_container("mover", 3, pool=pool), namespace)
    _wait_scheduled(api, namespace, "mover", operator, "3 replicas scheduled")
    nodes = {p.spec.node_name for p in api.pods(namespace, "mover")}
    assert len(nodes) == 3, f"Spread should use every node, got {nodes}"
    victim = sorted(nodes)[-1]
    api.core.delete_node(victim)
    try:

        def moved() -> bool:
            pods = api.pods(namespace, "mover")
            on = [p.spec.node_name for p in pods]
            return len(pods) == 3 and all(on) and victim not in on

        wait_for(f"replicas to leave {victim}", moved, timeout=180, operator=operator)

        def accounted() -> dict[str, Any] | None:
            status = api.pool(pool).get("status") or {}
            names = [n["name"] for n in status.get("nodes", [])]
            totals = status.get("totals", {})
            ok = victim not in names and totals.get("nodes") == 2
            return status if ok and totals.get("allocated") == "192Mi" else None

        status = wait_for("pool accounting without the node", accounted, operator=operator)
        assert sorted(n["allocated"] for n in status["nodes"]) == ["128Mi", "64Mi"]
        _wait_scheduled(api, namespace, "mover", operator, "Scheduled again")
    finally:
        try:
            api.core.create_node(node_manifest(victim))
        except ApiException as exc:
            if exc.status != 409:
                raise
        # The node agent publishes its EPC again on its next resync.
        wait_for(
            f"{victim} to advertise EPC again",
            lambda: (
                (api.core.read_node(victim).status.allocatable or {}).get("kubetee.io/epc")
                not in {None, "0"}
            ),
            timeout=60,
        )


@pytest.mark.usefixtures("free_nodes")
def test_binpack_packs_and_spread_spreads_on_the_real_scheduler(
    cluster: E2ECluster,
    api: Api,
    operator: OperatorProcess,
    namespace: str,
    pools: Callable[..., str],
) -> None:
    spread = pools("spread-e2e", "Spread")
    packed = pools("binpack-e2e", "BinPack")
    api.apply(enclave_container("spread", 3, epc="32Mi", pool=spread), namespace)
    _wait_scheduled(api, namespace, "spread", operator, "spread replicas scheduled")
    spread_nodes = [p.spec.node_name for p in api.pods(namespace, "spread")]
    assert len(set(spread_nodes)) == 3, f"Spread should use every node: {spread_nodes}"
    assert api.pods(namespace, "spread")[0].spec.scheduler_name == "kubetee-spread"

    # Every node now holds 32Mi: BinPack still puts both replicas on one of them.
    api.apply(enclave_container("packed", 2, epc="32Mi", pool=packed), namespace)
    _wait_scheduled(api, namespace, "packed", operator, "packed replicas scheduled")
    packed_nodes = [p.spec.node_name for p in api.pods(namespace, "packed")]
    assert len(set(packed_nodes)) == 1, f"BinPack should fill one node first: {packed_nodes}"
    assert api.pods(namespace, "packed")[0].spec.scheduler_name == "kubetee-binpack"


def _refusal(cluster: E2ECluster, namespace: str, manifest: dict[str, Any]) -> str:
    result = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", check=False, input_text=yaml.safe_dump(manifest)
    )
    assert result.returncode != 0, f"accepted: {manifest}"
    return result.stderr


def test_invalid_objects_are_refused_by_the_apiserver_with_a_readable_message(
    cluster: E2ECluster, operator: OperatorProcess, namespace: str
) -> None:
    negative = enclave_container("negative", 1, epc="-64Mi")
    assert "spec.epc: Invalid value" in (msg := _refusal(cluster, namespace, negative))
    assert "must be a positive quantity such as 64Mi" in msg

    fractional = enclave_container("fraction", 1, epc="1500Ki")
    assert "must be a whole number of MiB" in _refusal(cluster, namespace, fractional)

    bad_hex = enclave_container("badhex", 1, attestation={"policy": {"mrenclave": ["xyz"]}})
    msg = _refusal(cluster, namespace, bad_hex)
    assert "spec.attestation.policy.mrenclave[0]" in msg
    assert "[0-9a-fA-F]{64}" in msg

    ref = {"name": "s", "key": "k"}
    duplicates = enclave_container(
        "dupes",
        1,
        secrets=[
            {"name": "db", "secretKeyRef": ref, "file": "a"},
            {"name": "db", "secretKeyRef": ref, "env": "DB"},
        ],
    )
    assert "secret names must be unique" in _refusal(cluster, namespace, duplicates)

    both = enclave_container(
        "both", 1, secrets=[{"name": "db", "secretKeyRef": ref, "file": "a", "env": "DB"}]
    )
    assert "set exactly one of file or env" in _refusal(cluster, namespace, both)

    heap = enclave_container("heap", 1, epc="64Mi", enclave={"heapSize": "128Mi"})
    assert "enclave.heapSize must fit in epc" in _refusal(cluster, namespace, heap)

    # A policy that pins no enclave identity would hand the secrets to any enclave.
    for unpinned in (
        enclave_container("unpinned", 1, attestation={}),
        enclave_container("unpinned", 1, attestation={"policy": {"minIsvSvn": 0}}),
        enclave_container("unpinned", 1, attestation={"policy": {"mrenclave": [], "mrsigner": []}}),
    ):
        msg = _refusal(cluster, namespace, unpinned)
        assert "attestation.policy pins no enclave identity" in msg
        assert "set attestation.policy.mrenclave or attestation.policy.mrsigner" in msg


def test_what_the_schema_cannot_catch_becomes_a_condition_not_a_crash_loop(
    cluster: E2ECluster, api: Api, operator: OperatorProcess, namespace: str
) -> None:
    # The pod template is checked when the Deployment is written.
    bad_template = enclave_container("badpolicy", 1)
    bad_template["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Sometimes"
    api.apply(bad_template, namespace)
    ec = wait_for(
        "InvalidSpec",
        _scheduled(api, namespace, "badpolicy", "False", "InvalidSpec"),
        operator=operator,
    )
    assert "imagePullPolicy" in condition(ec, "Scheduled")["message"]

    api.apply(enclave_container("orphan", 1, pool="no-such-pool"), namespace)
    ec = wait_for(
        "PoolNotFound",
        _scheduled(api, namespace, "orphan", "False", "PoolNotFound"),
        operator=operator,
    )
    assert "no-such-pool" in condition(ec, "Scheduled")["message"]
    assert operator.process is not None
    assert operator.process.poll() is None, "the operator must keep running"
    time.sleep(1)
    assert api.apps.list_namespaced_deployment(namespace).items == []


@pytest.mark.usefixtures("free_nodes")
def test_pool_quota_caps_the_epc_of_a_namespace(
    cluster: E2ECluster,
    api: Api,
    operator: OperatorProcess,
    namespace: str,
    pools: Callable[..., str],
) -> None:
    pool = pools("quota-e2e")
    manifest = epc_pool(pool)
    manifest["spec"]["quotas"] = [{"namespace": namespace, "epc": "128Mi"}]
    api.apply(manifest)
    quota = wait_for(
        "the pool's ResourceQuota",
        lambda: (
            api.core.list_namespaced_resource_quota(
                namespace, label_selector=f"kubetee.io/pool={pool}"
            ).items
        ),
        operator=operator,
    )[0]
    assert quota.spec.hard == {"requests.kubetee.io/epc": "128"}

    # Three replicas of 64Mi: the quota admits two, the third is refused by the apiserver.
    api.apply(enclave_container("capped", 3, pool=pool), namespace)
    ec = wait_for(
        "EPCQuotaExceeded",
        _scheduled(api, namespace, "capped", "False", "EPCQuotaExceeded"),
        timeout=120,
        operator=operator,
    )
    assert "exceeded quota" in condition(ec, "Scheduled")["message"]
    assert len(api.pods(namespace, "capped")) == 2


@pytest.mark.usefixtures("free_nodes")
def test_spec_change_starts_a_rollout(
    cluster: E2ECluster,
    api: Api,
    operator: OperatorProcess,
    namespace: str,
    pools: Callable[..., str],
) -> None:
    """A spec change reaches the Deployment and starts a rollout to the new template.
    (With no attestation service here no replica becomes Ready; test_attestation.py rolls
    attested replicas to completion.)"""
    pool = pools("roll-e2e")
    manifest = enclave_container("roller", 2, epc="32Mi", pool=pool)
    api.apply(manifest, namespace)
    _wait_scheduled(api, namespace, "roller", operator, "scheduled")

    manifest["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "V", "value": "2"}]
    api.apply(manifest, namespace)

    def fresh_replicas() -> list[Any] | None:
        pods = api.pods(namespace, "roller")
        return [p for p in pods if p.spec.containers[0].env and p.spec.node_name] or None

    fresh = wait_for(
        "a replica of the new template", fresh_replicas, timeout=120, operator=operator
    )
    assert fresh[0].spec.containers[0].env[0].value == "2"
    assert len(api.apps.list_namespaced_replica_set(namespace).items) == 2
    events = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=roller"
    ).stdout
    assert "DeploymentUpdated" in events


def _fault(cluster: E2ECluster, node: str, *args: str) -> None:
    directory = plugin_dir(cluster.local_layout(), node)
    subprocess.run(
        [sys.executable, "-m", "kubetee.cli", "device-plugin", "fault",
         f"--plugin-dir={directory}", *args],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip


def _pool_node(api: Api, pool: str, node: str) -> dict[str, Any]:
    nodes = (api.pool(pool).get("status") or {}).get("nodes") or []
    return next((n for n in nodes if n["name"] == node), {})


def test_a_device_fault_shows_in_the_pool_status(
    cluster: E2ECluster, api: Api, operator: OperatorProcess, pools: Callable[..., str]
) -> None:
    """The device plugin marks EPC unhealthy, the node agent lowers allocatable, and the
    EPCPool's accounting and conditions follow."""
    pool = pools("fault-e2e")
    node = "sgx-node-1"
    wait_for("the pool to see the node", lambda: _pool_node(api, pool, node), operator=operator)
    try:
        _fault(cluster, node, "--unhealthy-mib", "32")
        entry = wait_for(
            "the pool to account the fault",
            lambda: (e := _pool_node(api, pool, node)).get("allocatable") == "96Mi" and e,
            timeout=30,
            operator=operator,
        )
        assert entry["capacity"] == "128Mi"

        _fault(cluster, node, "--unhealthy-mib", "128")
        lost = wait_for(
            "EPCAvailable=False/NodeLostEPC",
            lambda: (
                (c := condition(api.pool(pool), "EPCAvailable")).get("reason") == "NodeLostEPC"
                and c
            ),
            timeout=30,
            operator=operator,
        )
        assert node in lost["message"]
        assert condition(api.pool(pool), "Ready")["status"] == "False"
    finally:
        _fault(cluster, node, "--clear")
    wait_for(
        "the pool to recover",
        lambda: condition(api.pool(pool), "EPCAvailable").get("status") == "True",
        timeout=30,
        operator=operator,
    )
    assert _pool_node(api, pool, node)["allocatable"] == "128Mi"
